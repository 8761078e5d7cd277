// Files the agent writes are its own: directories 0700, files 0600, created
// with those modes (never chmod'ed down after the fact, which leaves a window).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Creates dir (and missing parents) 0700; an existing one is tightened to 0700 unless told otherwise. */
export function privateDir(dir: string, mode = 0o700): void {
  fs.mkdirSync(dir, { recursive: true, mode });
  fs.chmodSync(dir, mode);
}

/** Opens file for appending, 0600 (one made looser before is tightened), for the agent's own logs and reports. */
export function openPrivateFile(file: string): number {
  const fd = fs.openSync(file, 'a', 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}

/**
 * The token in file, made (random, 0600, in a 0700 directory) if absent.
 * Several processes starting at once agree on one token: each writes its own
 * temporary file and links it into place; the first link wins. A token made
 * by root in a directory someone else owns goes to that owner (compose: the
 * root manager and the non-root services share one token volume); the owner
 * of the directory could replace the file anyway.
 */
export function ensureToken(file: string): string {
  const existing = readToken(file);
  if (existing !== undefined) return existing;
  const dir = path.dirname(file);
  privateDir(dir);
  const owner = fs.statSync(dir);
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  if (process.getuid?.() === 0 && owner.uid !== 0) fs.chownSync(tmp, owner.uid, owner.gid);
  try {
    fs.linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  const made = readToken(file);
  if (made === undefined) throw new Error(`${file}: empty token`);
  return made;
}

/** A token file's content (trimmed), or undefined when it does not exist. */
export function readToken(file: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (text === '') throw new Error(`${file}: empty token file`);
  return text;
}
