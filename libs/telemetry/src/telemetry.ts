import { diag, DiagLogLevel } from '@opentelemetry/api';

/** service.name of a module: agent-apiserver, agent-agentcore, ... */
export function serviceName(module: string): string {
  return `agent-${module}`;
}

export interface Telemetry {
  /** Whether spans are exported at all (an OTLP endpoint is set). */
  readonly exporting: boolean;
  /** Flushes and stops, at most timeoutMs: an unreachable collector never holds up exit. */
  shutdown(timeoutMs?: number): Promise<void>;
}

export type Env = Readonly<Record<string, string | undefined>>;

/** Whether the standard OTEL_* variables ask for spans to be exported. */
function exporting(env: Env): boolean {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  return !!endpoint && env.OTEL_TRACES_EXPORTER !== 'none';
}

let started: Telemetry | undefined;

/** Whether spans are made at all (the SDK was started: an OTLP endpoint is set); without, callers skip the span work. */
export function tracing(): boolean {
  return started?.exporting === true;
}

/**
 * Starts OpenTelemetry for this process, hosting `modules` (one for a
 * service run alone, five for the daemon): the SDK (sdk.ts) when an OTLP
 * endpoint is set. Without one the SDK is not even loaded: nothing is
 * recorded, propagated or exported, no call pays for context (the trace-id
 * response header is then absent), and the heap does not carry the SDK's
 * modules.
 */
export function startTelemetry(opts: { process: string; modules: readonly string[]; env?: Env }): Telemetry {
  if (started) return started;
  const env = opts.env ?? process.env;
  diag.setLogger({ error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined, verbose: () => undefined }, DiagLogLevel.NONE);
  if (!exporting(env)) {
    started = { exporting: false, shutdown: async () => undefined };
    return started;
  }
  const { startSdk } = require('./sdk') as typeof import('./sdk');
  started = startSdk({ ...opts, env });
  return started;
}
