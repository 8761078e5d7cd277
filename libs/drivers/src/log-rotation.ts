import * as fs from 'node:fs';

export interface LogFilesOptions {
  /** A file larger than this is rotated; 0: no cap (the files are only removed). */
  readonly maxBytes: number;
  /** How often the sizes are checked. Default: 1000 ms. */
  readonly intervalMs?: number;
  /** Told of a file that could not be checked or rotated; the others still are. */
  readonly onError?: (file: string, err: unknown) => void;
}

/**
 * Log files written by processes that outlive the agent: the agent holds no
 * pipe it could cut, and cannot make them reopen a file, so a file over the
 * cap is copied to <file>.1 and truncated in place (copytruncate). Writers use
 * O_APPEND, so they go on at the new end, with no hole. What is written
 * between the copy and the truncate is lost: the price of staying out of the pipe.
 */
export class LogFiles {
  private readonly files = new Set<string>();
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: LogFilesOptions) {
    if (opts.maxBytes > 0) {
      this.timer = setInterval(() => this.check(), opts.intervalMs ?? 1_000);
      this.timer.unref();
    }
  }

  watch(file: string): void {
    this.files.add(file);
  }

  unwatch(file: string): void {
    this.files.delete(file);
  }

  /** Stops watching file and deletes it with its rotated copy; either may be missing. */
  remove(file: string): void {
    this.unwatch(file);
    for (const f of [file, rotatedName(file)]) fs.rmSync(f, { force: true });
  }

  /** One pass over the watched files; never throws. */
  check(): void {
    if (this.opts.maxBytes <= 0) return;
    for (const file of this.files) {
      try {
        if (fs.statSync(file).size > this.opts.maxBytes) rotate(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.opts.onError?.(file, err);
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}

function rotatedName(file: string): string {
  return `${file}.1`;
}

function rotate(file: string): void {
  const rotated = rotatedName(file);
  try {
    fs.copyFileSync(file, rotated);
    fs.chmodSync(rotated, 0o600); // the copy takes the live file's mode, whoever set it
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw err;
    // No room for the copy means the disk this cap protects is full: the history goes, the cap holds.
    fs.rmSync(rotated, { force: true });
    fs.truncateSync(file, 0);
    throw err;
  }
  fs.truncateSync(file, 0);
}
