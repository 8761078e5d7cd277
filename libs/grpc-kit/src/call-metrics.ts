// Every call a service of ours answers, counted by method and status code
// (grpc_server_handled_total, with go-grpc-prometheus's labels and code names).
import { metrics } from '@agent/telemetry';

/** grpc-go's names of the codes, as go-grpc-prometheus writes them. */
const CODE_NAMES = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied',
  'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated',
];

export type CallType = 'unary' | 'server_stream';

const counters = new Map<string, { inc(): void }>();

/** One call of path ("/agent.v1.AgentService/Get") ended with code. */
export function countCall(type: CallType, path: string, code: number): void {
  const key = `${path}\0${code}`;
  let c = counters.get(key);
  if (!c) {
    const slash = path.lastIndexOf('/');
    c = metrics.calls.labels({ grpc_type: type, grpc_service: path.slice(1, slash), grpc_method: path.slice(slash + 1), grpc_code: CODE_NAMES[code] ?? String(code) });
    counters.set(key, c);
  }
  c.inc();
}
