// Cutting established connections: their conntrack entries deleted with the
// `conntrack` command (conntrack-tools), one process per filter. The table's
// "ct state established" rule passes a connection only while its entry
// lives, with the mark the policy gave it; once it is gone, the next packet
// meets the policy as it is now (the quarantine drop, or no allow rule any
// more), even where the kernel picks the connection up again mid-stream.
import { spawn } from 'node:child_process';
import { isIP } from 'node:net';
import { MAX_RULE_ID } from '@agent/option';

export class ConntrackError extends Error {}

/** What cutting did: entries deleted, and why not all could be when something failed. */
export interface CutResult {
  readonly cut: number;
  readonly cutError?: string;
}

/** An address is an end of an entry as original source or destination, or as reply source or destination (they differ under NAT). */
const ADDRESS_FILTERS = ['--orig-src', '--orig-dst', '--reply-src', '--reply-dst'] as const;

/** How often one delete is run when an entry vanishes under it (another delete, or its timeout, took it). */
const ATTEMPTS = 5;

export class Conntrack {
  constructor(
    private readonly bin = 'conntrack',
    private readonly timeoutMs = 30_000,
  ) {}

  /**
   * Deletes the entries of every address and then of every mark, one target
   * after the other; a failed target does not stop the rest. Nothing to cut
   * runs nothing.
   */
  async cut(addresses: Iterable<string>, marks: Iterable<number>): Promise<CutResult> {
    const targets = [...new Set(addresses)].map((ip) => () => this.deleteAddress(ip));
    targets.push(...[...new Set(marks)].map((mark) => () => this.deleteMark(mark)));
    let cut = 0;
    const errors = new Set<string>();
    for (const target of targets) {
      try {
        cut += await target();
      } catch (err) {
        errors.add((err as Error).message);
      }
    }
    return errors.size === 0 ? { cut } : { cut, cutError: [...errors].join('; ') };
  }

  /** Deletes every entry the IPv4 address is an end of (the four filters at once); how many went. */
  async deleteAddress(ip: string): Promise<number> {
    if (isIP(ip) !== 4) throw new ConntrackError(`not an IPv4 address: ${ip}`);
    const counts = await Promise.all(ADDRESS_FILTERS.map((f) => this.delete([f, ip])));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** Deletes every entry marked with mark (the id of the allow rule that passed it); how many went. */
  async deleteMark(mark: number): Promise<number> {
    // 0 is every unmarked connection, and conntrack reads 2^32 as 0 too; past MAX_RULE_ID is every connection no rule allowed.
    if (!Number.isInteger(mark) || mark < 1 || mark > MAX_RULE_ID) throw new ConntrackError(`not a rule mark (1 to ${MAX_RULE_ID}): ${mark}`);
    return this.delete(['--mark', String(mark)]);
  }

  /**
   * One `conntrack -D`. It lists what matches, then deletes entry by entry,
   * printing each deleted one on stdout and the total on stderr; nothing
   * matched is exit 1 with "0 flow entries have been deleted". An entry gone
   * between its listing and its delete makes it stop at once ("such conntrack
   * doesn't exist", conntrack-tools 1.4.7 as Debian 12 has it; later ones
   * skip such an entry): what it deleted so far counts, and it runs again.
   */
  private async delete(filter: readonly string[]): Promise<number> {
    const args = ['-D', ...filter];
    let deleted = 0;
    for (let attempt = 1; ; attempt++) {
      const r = await this.exec(args);
      const total = /(\d+) flow entries have been deleted/.exec(r.stderr);
      if (total && (r.code === 0 || (r.code === 1 && total[1] === '0'))) return deleted + Number(total[1]);
      if (r.code === 1 && /such conntrack doesn't exist/.test(r.stderr) && attempt < ATTEMPTS) {
        deleted += r.lines;
        continue;
      }
      const how = r.timedOut ? `took longer than ${this.timeoutMs} ms` : r.code === null ? `was killed by ${r.signal ?? 'a signal'}` : `exited with ${r.code}`;
      throw new ConntrackError(`${this.bin} ${args.join(' ')} ${how}: ${r.stderr.trim().slice(0, 2000)}`);
    }
  }

  private exec(args: readonly string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; lines: number; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      // Not spawn's own timeout option: its timer outlives a child that never started (ENOENT).
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, this.timeoutMs);
      // Only counted: a large table prints a line per deleted entry.
      let lines = 0;
      const err: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => {
        for (const byte of b) if (byte === 0x0a) lines++;
      });
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new ConntrackError(e.code === 'ENOENT' ? `${this.bin} not found (conntrack-tools is needed to cut connections): ${e.message}` : `${this.bin}: ${e.message}`));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, timedOut, lines, stderr: Buffer.concat(err).toString('utf8') });
      });
    });
  }
}
