import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { StoreWriteError } from './store';

const MiB = 1024 * 1024;
/** Room only deletes may use: a full disk never stops the agent from forgetting. */
const RESERVE = 1 * MiB;
/** The file's allocation grows by at least this much, or a 32nd of its size. */
const MIN_GROWTH = 2 * MiB;
/** Worst case of pages a write of n bytes takes: copy-on-write of the leaf and branch pages, plus overflow pages. */
const pagesFor = (bytes: number): number => 2 * bytes + 16 * 4096;

/**
 * Keeps disk room allocated ahead of the database file, so that the database
 * itself never meets a full disk. (LMDB's write path does not survive one
 * well: lmdb-js answered EIO and then corrupted its heap or took SIGBUS when
 * we tried.) A write first claims room: when the blocks allocated beyond the
 * file's end (fallocate --keep-size) cannot cover it and the disk cannot give
 * more, the write is refused with ENOSPC before it reaches the database, and
 * refused writes are retried against the disk on the next claim. A read-only
 * file system is refused the same way, with EROFS.
 */
export class DiskRoom {
  private claimed = 0;
  /** fallocate is missing or the file system lacks it: fall back to the free space statfs reports. */
  private canAllocate = true;

  constructor(
    private readonly file: string,
    private readonly dir: string,
  ) {}

  /** Claims room for a write of bytes; the release goes back once it is committed (or failed). */
  claim(bytes: number, kind: 'put' | 'delete'): () => void {
    try {
      fs.accessSync(this.dir, fs.constants.W_OK);
    } catch (err) {
      throw storeError(this.dir, err);
    }
    const need = pagesFor(bytes);
    const reserve = kind === 'put' ? RESERVE : 0;
    const st = fs.statSync(this.file);
    const room = st.blocks * 512 - st.size - this.claimed;
    if (room < need + reserve) this.grow(st.size, this.claimed + need + reserve, need + reserve);
    this.claimed += need;
    let released = false;
    return () => {
      if (!released) this.claimed -= need;
      released = true;
    };
  }

  /** Allocates (without changing the file's size) up to size + wanted and some, or throws ENOSPC. */
  private grow(size: number, wanted: number, needNow: number): void {
    if (this.canAllocate) {
      const r = this.allocate(size + wanted + Math.max(MIN_GROWTH, Math.floor(size / 32)));
      if (r.status === 0) return;
      const words = `${r.stderr ?? ''} ${r.error?.message ?? ''}`.trim();
      if (/No space left|Disk quota/i.test(words)) {
        // Perhaps not the margin, but the write itself still fits.
        if (this.allocate(size + wanted).status === 0) return;
        throw storeError(this.dir, errnoError(/quota/i.test(words) ? 'EDQUOT' : 'ENOSPC', words));
      }
      if (/Read-only/i.test(words)) throw storeError(this.dir, errnoError('EROFS', words));
      this.canAllocate = false; // not supported here (or no fallocate binary): statfs from now on
    }
    const fsStat = fs.statfsSync(this.dir);
    if (fsStat.bavail * fsStat.bsize < needNow) throw storeError(this.dir, errnoError('ENOSPC', 'no space left on device'));
  }

  /** fallocate --keep-size: blocks up to length are the file's, its size (what LMDB sees) unchanged. */
  private allocate(length: number): SpawnSyncReturns<string> {
    return spawnSync('fallocate', ['--keep-size', '--offset', '0', '--length', String(length), this.file], { encoding: 'utf8' });
  }
}

function errnoError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

const WORDS: Record<string, string> = { ENOSPC: 'no space left on device', EDQUOT: 'disk quota exceeded', EROFS: 'read-only file system', EIO: 'input/output error', EACCES: 'permission denied' };

/** An errno (a name, or a number as LMDB gives it) -> StoreWriteError with the name and the system's words for it. */
export function storeError(dir: string, err: unknown): StoreWriteError {
  const raw = (err as { code?: unknown }).code;
  const byNumber = typeof raw === 'number' ? errnoName(raw) : undefined;
  const code = typeof raw === 'string' ? raw : (byNumber ?? 'EIO');
  return new StoreWriteError(code, `store cannot write in ${dir}: ${WORDS[code] ?? (err instanceof Error ? err.message : String(err))} (${code})`, { cause: err });
}

function errnoName(n: number): string | undefined {
  if (n === -30792) return 'MDB_MAP_FULL';
  for (const [name, value] of Object.entries(os.constants.errno)) if (value === n) return name;
  return undefined;
}
