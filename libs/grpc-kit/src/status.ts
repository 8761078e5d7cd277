import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import {
  AgentError,
  AlreadyExistsError,
  DeadlineExceededError,
  DriverError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  NotSupportedError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
} from './errors';

/** Carries the domain error's class across a hop so the peer can rebuild it. */
const KIND_KEY = 'agent-error-kind';

type Rebuild = (message: string) => AgentError;

// The one table: domain error class <-> gRPC status code.
const TABLE: ReadonlyArray<{ kind: string; cls: abstract new (...a: never[]) => AgentError; code: status; rebuild: Rebuild }> = [
  { kind: 'invalid-argument', cls: InvalidArgumentError, code: status.INVALID_ARGUMENT, rebuild: (m) => invalidFromMessage(m) },
  { kind: 'not-found', cls: NotFoundError, code: status.NOT_FOUND, rebuild: (m) => new NotFoundError(m) },
  { kind: 'already-exists', cls: AlreadyExistsError, code: status.ALREADY_EXISTS, rebuild: (m) => new AlreadyExistsError(m) },
  { kind: 'driver', cls: DriverError, code: status.FAILED_PRECONDITION, rebuild: (m) => driverFromMessage(m) },
  { kind: 'failed-precondition', cls: FailedPreconditionError, code: status.FAILED_PRECONDITION, rebuild: (m) => new FailedPreconditionError(m) },
  { kind: 'not-supported', cls: NotSupportedError, code: status.UNIMPLEMENTED, rebuild: (m) => new NotSupportedError(m) },
  { kind: 'unavailable', cls: UnavailableError, code: status.UNAVAILABLE, rebuild: (m) => new UnavailableError(m) },
  { kind: 'resource-exhausted', cls: ResourceExhaustedError, code: status.RESOURCE_EXHAUSTED, rebuild: (m) => new ResourceExhaustedError(m) },
  { kind: 'deadline', cls: DeadlineExceededError, code: status.DEADLINE_EXCEEDED, rebuild: (m) => new DeadlineExceededError(m) },
  { kind: 'unauthenticated', cls: UnauthenticatedError, code: status.UNAUTHENTICATED, rebuild: (m) => new UnauthenticatedError(m) },
  { kind: 'permission-denied', cls: PermissionDeniedError, code: status.PERMISSION_DENIED, rebuild: (m) => new PermissionDeniedError(m) },
];

function invalidFromMessage(m: string): InvalidArgumentError {
  const i = m.indexOf(': ');
  return i > 0 ? new InvalidArgumentError(m.slice(0, i), m.slice(i + 2)) : new InvalidArgumentError('request', m);
}

function driverFromMessage(m: string): DriverError {
  const i = m.indexOf(': ');
  return new DriverError(i > 0 ? m.slice(0, i) : 'driver', m);
}

export interface MappedStatus extends StatusObject {
  /** True when the error was not a domain error: log it, it is a bug or an unexpected failure. */
  readonly unexpected: boolean;
}

/** Domain error -> gRPC status. Unknown errors become INTERNAL with a generic message. */
export function toGrpcStatus(err: unknown): MappedStatus {
  const metadata = new Metadata();
  for (const row of TABLE) {
    if (err instanceof row.cls) {
      metadata.set(KIND_KEY, row.kind);
      return { code: row.code, details: (err as Error).message, metadata, unexpected: false };
    }
  }
  return { code: status.INTERNAL, details: 'internal error', metadata, unexpected: true };
}

/** An error as a grpc-js client gives it (code, details, trailers), for a call answered without one (a local handler, the pipe). */
export function serviceError(code: status, details: string, metadata: Metadata = new Metadata()): ServiceError {
  return Object.assign(new Error(`${code} ${status[code] ?? ''}: ${details}`), { code, details, metadata });
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && 'metadata' in err;
}

/** gRPC error from a peer -> domain error, so that it maps to the same status again upstream. */
export function fromGrpcError(err: unknown): Error {
  if (!isServiceError(err)) return err instanceof Error ? err : new Error(String(err));
  const kind = err.metadata?.get(KIND_KEY)[0];
  const message = err.details || err.message;
  const byKind = TABLE.find((r) => r.kind === kind);
  if (byKind) return withCause(byKind.rebuild(message), err);
  const byCode = TABLE.find((r) => r.code === err.code && r.kind !== 'driver');
  if (byCode) return withCause(byCode.rebuild(message), err);
  if (err.code === status.CANCELLED) return withCause(new UnavailableError(`call cancelled: ${message}`), err);
  return err;
}

function withCause<E extends Error>(e: E, cause: unknown): E {
  Object.defineProperty(e, 'cause', { value: cause, enumerable: false });
  return e;
}
