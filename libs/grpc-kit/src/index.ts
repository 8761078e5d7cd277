export {
  AgentError,
  InvalidArgumentError,
  NotFoundError,
  AlreadyExistsError,
  FailedPreconditionError,
  NotSupportedError,
  UnavailableError,
  DeadlineExceededError,
  ResourceExhaustedError,
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
export { boundedWriter, startGrpcServer, unary, serverStream } from './server';
export { Encoded, type Answer } from './encoded';
export type { ServiceBinding, RunningServer } from './server';
export { Peer, LocalPeer, connect, connectLocal } from './client';
export type { CallOpts, ConnectOpts } from './client';
export { PipePeer, connectInternal } from './pipe';
export { Role, INTERNAL_ONLY, TokenBook, authorize, bearerToken, parseBearer, callerOf, certificateAuth, socketAuth, tokenAuth } from './auth';
export type { Access, Authenticate, Caller } from './auth';
export { ensureToken, openPrivateFile, privateDir, readToken } from './private-files';
export { accountEntries } from './accounts';
export { checkPlaintext, groupId, internalListener, internalToken, prepareDataDir, publicListeners, publicTokens } from './listeners';
export type { Listener } from './listeners';
export { atMost, exitOnSignal, retry, runMain } from './lifecycle';
export type { ShutdownStep } from './lifecycle';
export { traced, tracer, extractContext, injectContext, TRACE_ID_HEADER } from './tracing';
export { serveMetrics } from './metrics-endpoint';
export type { MetricsEndpoint } from './metrics-endpoint';
