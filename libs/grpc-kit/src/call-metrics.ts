// Every call a service of ours answers, counted by method and status code
// (grpc_server_handled_total, with go-grpc-prometheus's labels and code names).
import { metrics } from '@agent/telemetry';

/** grpc-go's names of the codes, as go-grpc-prometheus writes them. */
const CODE_NAMES = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied',
  'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated',
];

export type CallType = 'unary' | 'server_stream' | 'bidi_stream';

type CallLabels = Readonly<Record<'grpc_type' | 'grpc_service' | 'grpc_method' | 'grpc_code', string>>;

interface Count {
  readonly labels: CallLabels;
  n: number;
}

/** Calls by method, then by code: plain numbers on the call's path (no string built per call), read by the registry when scraped. */
const counts = new Map<string, Array<Count | undefined>>();
metrics.calls.provide(function* () {
  for (const byCode of counts.values()) for (const c of byCode) if (c) yield [c.labels, c.n] as const;
});

/** One call of path ("/agent.v1.AgentService/Get") ended with code. */
export function countCall(type: CallType, path: string, code: number): void {
  let byCode = counts.get(path);
  if (!byCode) counts.set(path, (byCode = []));
  const c = byCode[code];
  if (c) {
    c.n++;
    return;
  }
  const slash = path.lastIndexOf('/');
  byCode[code] = { labels: { grpc_type: type, grpc_service: path.slice(1, slash), grpc_method: path.slice(slash + 1), grpc_code: CODE_NAMES[code] ?? String(code) }, n: 1 };
}
