import { ConfigError, type LogLevel } from '@agent/option';
import { startTelemetry, type Telemetry } from '@agent/telemetry';
import { Logger } from './log';

export type ShutdownStep = readonly [name: string, run: () => Promise<void> | void];

/**
 * On SIGTERM or SIGINT, runs the steps in order (each step's failure is
 * logged, not fatal) and exits; exits 1 if they take longer than timeoutMs.
 * A second signal exits at once.
 */
export function exitOnSignal(log: Logger, steps: readonly ShutdownStep[], timeoutMs = 10_000): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn('second signal; exiting now', { signal });
      process.exit(1);
    }
    stopping = true;
    log.info('shutting down', { signal });
    const hard = setTimeout(() => {
      log.error('shutdown took too long; exiting', { timeoutMs });
      process.exit(1);
    }, timeoutMs);
    hard.unref();
    void (async () => {
      for (const [name, run] of steps) {
        try {
          await run();
        } catch (err) {
          log.warn('shutdown step failed', { step: name, err });
        }
      }
      log.info('stopped');
      process.exit(0);
    })();
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

/** Waits for p to settle (either way), at most timeoutMs; the timer is cleared when p wins. */
export async function atMost(p: Promise<unknown>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const settled = p.then(() => undefined, () => undefined);
  await Promise.race([settled, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
}

/** Retries fn with backoff until it succeeds or attempts run out (then throws the last error). */
export async function retry<T>(log: Logger, what: string, fn: () => Promise<T>, attempts = 30, firstDelayMs = 100): Promise<T> {
  let delay = firstDelayMs;
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts) throw err;
      log.warn(`${what} failed; retrying`, { attempt: i, delayMs: delay, reason: (err as Error).message });
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }
}

/**
 * Runs a service's main, under umask 077: OpenTelemetry first (for `module`, or every module
 * the process hosts), then main. A bad setting or a failed start is logged
 * and exits 1.
 */
export function runMain(module: string, main: (log: Logger, telemetry: Telemetry) => Promise<void>, hosts: readonly string[] = [module]): void {
  // Whatever the agent writes (store, logs, tokens, sockets) is born private;
  // workloads get 022 back from their launcher.
  process.umask(0o077);
  const log = new Logger(module, (process.env.AGENT_LOG_LEVEL as LogLevel | undefined) ?? 'info');
  let telemetry: Telemetry;
  try {
    telemetry = startTelemetry({ process: module, modules: hosts });
  } catch (err) {
    log.error('bad telemetry configuration', { reason: (err as Error).message });
    process.exit(1);
  }
  if (telemetry.exporting) log.info('exporting traces', { endpoint: process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_ENDPOINT });
  main(log, telemetry).catch((err: unknown) => {
    if (err instanceof ConfigError) log.error('bad configuration', { variable: err.variable, reason: err.message });
    else log.error('startup failed', { err });
    process.exit(1);
  });
}
