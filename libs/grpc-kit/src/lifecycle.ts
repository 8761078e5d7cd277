import { ConfigError, type LogLevel } from '@agent/option';
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

/** Runs a service's main; a bad setting or a failed start is logged and exits 1. */
export function runMain(module: string, main: (log: Logger) => Promise<void>): void {
  const log = new Logger(module, (process.env.AGENT_LOG_LEVEL as LogLevel | undefined) ?? 'info');
  main(log).catch((err: unknown) => {
    if (err instanceof ConfigError) log.error('bad configuration', { variable: err.variable, reason: err.message });
    else log.error('startup failed', { err });
    process.exit(1);
  });
}
