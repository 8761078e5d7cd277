import * as fs from 'node:fs';
import * as path from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { DiskRoom, storeError } from './disk-room';
import { FileStore } from './file-store';
import { LocalWatchers } from './local-watch';
import type { KvStore, StoreChange } from './store';

const KEY_RE = /^[A-Za-z0-9_.-]{1,250}$/;
const FILE = 'agent.mdb';
const PROBE_KEY = 'store.probe';
const PING_ROOM = 1024 * 1024;

/**
 * The embedded store: one LMDB database (lmdb-js) in a private directory.
 * Writes go to LMDB's own writer thread, batched into transactions, so the
 * event loop never waits on the disk; a put resolves once its transaction is
 * committed, which survives a kill of the agent at any point (LMDB is
 * copy-on-write: the file holds the last committed transaction or the one
 * before it, never half of one). Reads come from the memory map.
 *
 * A write the disk cannot take (full, read-only, failing) rejects with a
 * StoreWriteError naming the cause, before it reaches the database (see
 * DiskRoom); reads keep working, and the next write that fits succeeds.
 */
export class LmdbStore implements KvStore {
  private readonly watchers = new LocalWatchers();
  private readonly room: DiskRoom;

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
    await this.write(key.length + Buffer.byteLength(value), 'put', () => this.db.put(key, value));
    this.watchers.notify(key, value);
  }

  async putIf(key: string, value: string, expected: string | undefined): Promise<boolean> {
    checkKey(key);
    let written = false;
    // The read and the write in one write transaction: no other put comes between.
    await this.write(key.length + Buffer.byteLength(value), 'put', () =>
      this.db.transaction(() => {
        if (this.db.get(key) !== expected) return false;
        void this.db.put(key, value);
        return (written = true);
      }),
    );
    if (written) this.watchers.notify(key, value);
    return written;
  }

  async get(key: string): Promise<string | undefined> {
    return this.db.get(key);
  }

  async delete(key: string): Promise<void> {
    await this.write(key.length, 'delete', () => this.db.remove(key));
    this.watchers.notify(key, undefined);
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
    await this.write(PING_ROOM, 'put', () => this.db.put(PROBE_KEY, new Date().toISOString()));
  }

  async close(): Promise<void> {
    this.watchers.clear();
    await this.db.close();
  }

  private async write(bytes: number, kind: 'put' | 'delete', fn: () => Promise<boolean>): Promise<void> {
    const release = this.room.claim(bytes, kind);
    try {
      await fn();
    } catch (err) {
      // Not the disk's room (that was claimed): the database's own failure.
      const commit = (err as { commitError?: Promise<unknown> }).commitError;
      throw storeError(this.dir, commit ? await commit.then(() => err, (e: unknown) => e) : err);
    } finally {
      release();
    }
  }
}

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
