import * as fs from 'node:fs';
import * as path from 'node:path';
import { LocalWatchers } from './local-watch';
import { applyEach, type KvStore, type StoreChange } from './store';

const KEY_RE = /^[A-Za-z0-9_.-]{1,250}$/;

/**
 * The first embedded store's format: one file per key under a directory. A
 * put writes a temporary file and renames it over the old one. Kept to read a
 * data directory of that format once (LmdbStore migrates it at first start)
 * and as the peer the store benchmark measures the database against.
 */
export class FileStore implements KvStore {
  private readonly watchers = new LocalWatchers();
  private seq = 0;

  constructor(
    readonly dir: string,
    private readonly opts: { fsync?: boolean } = {},
  ) {
    // Records hold every object's env (passwords too): the agent's alone.
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    // Temporary files of a write that a kill interrupted.
    for (const f of fs.readdirSync(dir)) if (f.includes('.tmp-')) fs.rmSync(path.join(dir, f), { force: true });
  }

  private file(key: string): string {
    if (!KEY_RE.test(key)) throw new Error(`bad store key ${JSON.stringify(key)}`);
    return path.join(this.dir, `${key}.json`);
  }

  async put(key: string, value: string): Promise<void> {
    const file = this.file(key);
    const tmp = `${file}.tmp-${process.pid}-${this.seq++}`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, value);
      if (this.opts.fsync) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    this.notify(key, value);
  }

  /** One process's compare-and-put (this format has one writer: it is only read once, and measured). */
  async putIf(key: string, value: string, expected: string | undefined): Promise<boolean> {
    if ((await this.get(key)) !== expected) return false;
    await this.put(key, value);
    return true;
  }

  async get(key: string): Promise<string | undefined> {
    try {
      return fs.readFileSync(this.file(key), 'utf8');
    } catch {
      return undefined;
    }
  }

  async delete(key: string): Promise<void> {
    fs.rmSync(this.file(key), { force: true });
    this.notify(key, undefined);
  }

  /** Each key on its own, in order (this format has no transaction). */
  async apply(changes: readonly StoreChange[]): Promise<void> {
    await applyEach(this, changes);
  }

  async list(prefix: string): Promise<Array<[string, string]>> {
    const out: Array<[string, string]> = [];
    for (const f of fs.readdirSync(this.dir).sort()) {
      if (!f.endsWith('.json') || !f.startsWith(prefix)) continue;
      const key = f.slice(0, -'.json'.length);
      const v = await this.get(key);
      if (v !== undefined) out.push([key, v]);
    }
    return out;
  }

  watch(prefix: string, fn: (c: StoreChange) => void): () => void {
    return this.watchers.add(prefix, fn, this);
  }

  async ping(): Promise<void> {
    fs.accessSync(this.dir, fs.constants.W_OK);
  }

  async close(): Promise<void> {
    this.watchers.clear();
  }

  private notify(key: string, value: string | undefined): void {
    this.watchers.notify(key, value);
  }
}
