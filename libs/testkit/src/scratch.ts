// Temporary directories of a test process (agents' data directories, a
// sink's ledger), removed when the process exits: a test file may still read
// one after its agent stopped, and no run leaves them behind (an agent's data
// directory holds its database, several MB with the room it sets aside).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const made = new Set<string>();

/** A new private directory under the system's temporary one, gone when this process exits. */
export function scratchDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (made.size === 0) process.once('exit', removeAll);
  made.add(dir);
  return dir;
}

function removeAll(): void {
  for (const dir of made) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // a mount left in it (a test's tmpfs): the directory stays, nothing else does
    }
  }
  made.clear();
}
