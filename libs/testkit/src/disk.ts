import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A small tmpfs of its own (root): a disk a test may fill. */
export interface Tmpfs {
  readonly dir: string;
  unmount(): void;
}

export function mountTmpfs(size: string): Tmpfs {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  return {
    dir,
    unmount: () => {
      execFileSync('umount', ['-l', dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Something else takes the rest of the disk: writes file until the disk says ENOSPC (any other error is thrown). */
export function fillDisk(file: string, chunkBytes = 64 * 1024): void {
  const fd = fs.openSync(file, 'w');
  try {
    for (;;) fs.writeSync(fd, Buffer.alloc(chunkBytes, 1));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    fs.closeSync(fd);
  }
}
