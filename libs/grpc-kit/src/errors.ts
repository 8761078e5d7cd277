// Domain errors. Services throw these; exactly one table (status.ts) turns
// them into gRPC status codes and back.

export class AgentError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A request field is malformed. The message always starts with the field's path. */
export class InvalidArgumentError extends AgentError {
  constructor(
    readonly field: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${field}: ${reason}`, options);
  }
}

export class NotFoundError extends AgentError {}
export class AlreadyExistsError extends AgentError {}
/** The request is well-formed but the object is in no state for it. */
export class FailedPreconditionError extends AgentError {}
/** A driver cannot do this at all (see its capabilities). */
export class NotSupportedError extends AgentError {}
/** A dependency (Docker, a peer service, the upstream) cannot be reached. */
export class UnavailableError extends AgentError {}
export class DeadlineExceededError extends AgentError {}
/** A bounded resource (disk for the store, a queue) is full: the call may succeed once room is made. */
export class ResourceExhaustedError extends AgentError {}
/** The caller presented no credentials, or wrong ones. */
export class UnauthenticatedError extends AgentError {}
/** The caller is known but its role may not do this. */
export class PermissionDeniedError extends AgentError {}
/** A driver call failed; the message is meant for the user (it becomes last_error). */
export class DriverError extends AgentError {
  constructor(
    readonly driver: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message.startsWith(`${driver}: `) ? message : `${driver}: ${message}`, options);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
