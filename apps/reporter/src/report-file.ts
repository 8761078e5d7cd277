import * as fs from 'node:fs';
import * as path from 'node:path';
import { openPrivateFile } from '@agent/grpc-kit';

/**
 * The JSON Lines file, written synchronously. With a cap it is renamed to
 * <file>.1 (replacing the last one) before a line would take it past the cap,
 * so it never does unless one line alone is longer; lines are never split.
 */
export class ReportFile {
  private fd: number;
  /** Tracked, not stat'ed: only this writer appends. */
  private bytes: number;

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
  ) {
    // Reports name every workload: the file is the agent's alone.
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    this.fd = openPrivateFile(file);
    this.bytes = fs.fstatSync(this.fd).size;
  }

  append(lines: readonly string[]): void {
    let chunk = '';
    let chunkBytes = 0;
    for (const line of lines) {
      const next = `${line}\n`;
      const nextBytes = Buffer.byteLength(next);
      const size = this.bytes + chunkBytes;
      if (this.maxBytes > 0 && size > 0 && size + nextBytes > this.maxBytes) {
        this.write(chunk);
        this.rotate();
        chunk = '';
        chunkBytes = 0;
      }
      chunk += next;
      chunkBytes += nextBytes;
    }
    this.write(chunk);
  }

  sync(): void {
    fs.fsyncSync(this.fd);
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  private write(chunk: string): void {
    if (chunk !== '') this.bytes += fs.writeSync(this.fd, chunk);
  }

  /** Renamed first: should the new file fail to open, reports still go to the old one. */
  private rotate(): void {
    try {
      fs.renameSync(this.file, `${this.file}.1`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // removed from outside: a new one is begun
    }
    const fd = openPrivateFile(this.file);
    fs.closeSync(this.fd);
    this.fd = fd;
    this.bytes = 0;
  }
}
