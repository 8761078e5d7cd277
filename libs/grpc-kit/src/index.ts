export {
  AgentError,
  InvalidArgumentError,
  NotFoundError,
  AlreadyExistsError,
  FailedPreconditionError,
  NotSupportedError,
  UnavailableError,
  DeadlineExceededError,
  UnauthenticatedError,
  PermissionDeniedError,
  DriverError,
  errorMessage,
} from './errors';
export { toGrpcStatus, fromGrpcError, isServiceError } from './status';
export type { MappedStatus } from './status';
export { Logger } from './log';
export type { Fields } from './log';
export { HealthRegistry } from './health';
export { startGrpcServer, unary, serverStream } from './server';
export type { ServiceBinding, RunningServer } from './server';
export { Peer, LocalPeer, connect, connectLocal } from './client';
export type { CallOpts } from './client';
export { exitOnSignal, retry, runMain } from './lifecycle';
export type { ShutdownStep } from './lifecycle';
export { traced, tracer, extractContext, injectContext, TRACE_ID_HEADER } from './tracing';
