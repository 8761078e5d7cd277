import * as fs from 'node:fs';
import * as path from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { DiskRoom, storeError } from './disk-room';
import { FileStore } from './file-store';
import { LocalWatchers } from './local-watch';
import { SlowDisk } from './slow-disk';
import type { KvStore, StoreChange } from './store';

const KEY_RE = /^[A-Za-z0-9_.-]{1,250}$/;
const FILE = 'agent.mdb';
const PROBE_KEY = 'store.probe';
const PING_ROOM = 1024 * 1024;

/**
 * The embedded store: one LMDB database (lmdb-js) in a private directory.
 * A lone write commits on the event loop's thread, writes that come in a
 * burst go to LMDB's writer thread batched into transactions (commit); a
 * put resolves once its transaction is committed and synced, which survives
 * a kill of the agent at any point (LMDB is copy-on-write: the file holds the
 * last committed transaction or the one before it, never half of one).
 * Reads come from the memory map.
 *
 * A write the disk cannot take (full, read-only, failing) rejects with a
 * StoreWriteError naming the cause, before it reaches the database (see
 * DiskRoom); reads keep working, and the next write that fits succeeds.
 */
export class LmdbStore implements KvStore {
  private readonly watchers = new LocalWatchers();
  private readonly room: DiskRoom;
  /** Transactions handed to the writer thread and not yet committed. */
  private queued = 0;
  /** Time spent in commits on this thread in the current turn of the event loop. */
  private turnMs = 0;
  private turnReset = false;
  /** A commit on this thread just happened, in the code still running (a loop of writes not awaited one by one). */
  private justCommitted = false;
  /** While it holds the disk slow, every write goes to the writer thread. */
  private readonly slowDisk = new SlowDisk();

  private constructor(
    readonly dir: string,
    private readonly db: RootDatabase<string, string>,
    /** Records taken over from a data directory of the old one-file-per-key format at this start. */
    readonly migrated: number,
  ) {
    this.room = new DiskRoom(path.join(dir, FILE), dir);
  }

  /** Opens (or makes) the database in dir; records of the old format in migrateFrom are moved in once. */
  static async open(dir: string, opts: { migrateFrom?: string } = {}): Promise<LmdbStore> {
    // Records hold every object's env (passwords too): the agent's alone.
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    // eventTurnBatching off: with it, lmdb-js leaves a promise of its own
    // unhandled when a commit fails (a full disk would crash the agent).
    const db = open<string, string>({ path: path.join(dir, FILE), encoding: 'string', compression: false, eventTurnBatching: false });
    for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), 0o600);
    const migrated = opts.migrateFrom ? await migrate(db, opts.migrateFrom) : 0;
    return new LmdbStore(dir, db, migrated);
  }

  async put(key: string, value: string): Promise<void> {
    checkKey(key);
    await this.write(key.length + Buffer.byteLength(value), 'put', () => void this.db.put(key, value));
    this.watchers.notify(key, value);
  }

  async putIf(key: string, value: string, expected: string | undefined): Promise<boolean> {
    checkKey(key);
    let written = false;
    // The read and the write in one write transaction: no other put comes between.
    await this.write(key.length + Buffer.byteLength(value), 'put', () => {
      if (this.db.get(key) !== expected) return;
      void this.db.put(key, value);
      written = true;
    });
    if (written) this.watchers.notify(key, value);
    return written;
  }

  async get(key: string): Promise<string | undefined> {
    return this.db.get(key);
  }

  async delete(key: string): Promise<void> {
    await this.write(key.length, 'delete', () => void this.db.remove(key));
    this.watchers.notify(key, undefined);
  }

  async apply(changes: readonly StoreChange[]): Promise<void> {
    let bytes = 0;
    for (const c of changes) {
      checkKey(c.key);
      bytes += c.key.length + (c.value === undefined ? 0 : Buffer.byteLength(c.value));
    }
    const kind = changes.some((c) => c.value !== undefined) ? 'put' : 'delete';
    await this.write(bytes, kind, () => {
      for (const c of changes) void (c.value === undefined ? this.db.remove(c.key) : this.db.put(c.key, c.value));
    });
    for (const c of changes) this.watchers.notify(c.key, c.value);
  }

  async list(prefix: string): Promise<Array<[string, string]>> {
    const out: Array<[string, string]> = [];
    // Keys are ASCII below 0x7f: the range [prefix, prefix + DEL) is exactly the keys under it.
    for (const { key, value } of this.db.getRange({ start: prefix, end: `${prefix}\x7f` })) out.push([key, value]);
    return out;
  }

  watch(prefix: string, fn: (c: StoreChange) => void): () => void {
    return this.watchers.add(prefix, fn, this);
  }

  /**
   * Healthy when the database takes a write and has room for a MiB more: a
   * store that still fits small records but no longer large ones is not.
   */
  async ping(): Promise<void> {
    await this.write(PING_ROOM, 'put', () => void this.db.put(PROBE_KEY, new Date().toISOString()));
  }

  async close(): Promise<void> {
    this.watchers.clear();
    await this.db.close();
  }

  /**
   * One write transaction, resolved once committed and synced. A write made
   * while none is queued commits here, on the event loop's thread: no hand-off
   * to the writer thread and back, which is most of a lone write's latency
   * (and its tail) on a busy host. Writes that come while others are queued
   * go to the writer thread, in order after them, batched into one
   * transaction; so do writes made right after one (a loop that does not
   * await each: one sync for the batch, not one each), writes past the
   * turn's budget (awaited writes one after another block the event loop
   * for about a millisecond, not for all of them) and every write for a
   * while once the disk's syncs are slow (slow-disk.ts: a slow disk never
   * stalls the loop for long, and one slow sync is not a slow disk).
   */
  private commit(fn: () => void): Promise<unknown> {
    if (this.queued > 0 || this.justCommitted || this.turnMs >= TURN_BUDGET_MS || this.slowDisk.held) {
      this.queued++;
      return this.db.transaction(fn).finally(() => this.queued--);
    }
    if (!this.turnReset) {
      this.turnReset = true;
      setImmediate(() => {
        this.turnMs = 0;
        this.turnReset = false;
      });
    }
    this.justCommitted = true;
    queueMicrotask(() => (this.justCommitted = false));
    const t0 = performance.now();
    try {
      this.db.transactionSync(fn);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    } finally {
      const ms = performance.now() - t0;
      this.turnMs += ms;
      this.slowDisk.synced(ms);
    }
  }

  /** Runs fn (the puts and removes of one write) in a write transaction, committed (see commit) once the disk has room for bytes. */
  private async write(bytes: number, kind: 'put' | 'delete', fn: () => void): Promise<void> {
    const release = this.room.claim(bytes, kind);
    try {
      await this.commit(fn);
    } catch (err) {
      // Not the disk's room (that was claimed): the database's own failure.
      const commit = (err as { commitError?: Promise<unknown> }).commitError;
      throw storeError(this.dir, commit ? await commit.then(() => err, (e: unknown) => e) : err);
    } finally {
      release();
    }
  }
}

/** Commits on the event loop's thread within a turn of it: while they take less, a write does not wait for the writer thread. */
const TURN_BUDGET_MS = 1;

function checkKey(key: string): void {
  if (!KEY_RE.test(key)) throw new Error(`bad store key ${JSON.stringify(key)}`);
}

/** Moves the records of a one-file-per-key directory in, then removes it (a kill in between only repeats the copy). */
async function migrate(db: RootDatabase<string, string>, from: string): Promise<number> {
  if (!fs.existsSync(from)) return 0;
  const entries = await new FileStore(from).list('');
  await db.transaction(() => {
    // A record already here is newer (an earlier migration committed, then the agent ran).
    for (const [key, value] of entries) if (db.get(key) === undefined) void db.put(key, value);
  });
  fs.rmSync(from, { recursive: true, force: true });
  return entries.length;
}
