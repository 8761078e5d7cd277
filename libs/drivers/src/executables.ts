// Finding an executable as execvp would, before anything is spawned: a
// missing binary is an error of the caller's request, not of a child.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The agent's own PATH: the launcher's, and the search path when the caller's env sets none. */
export const AGENT_PATH = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';

/** Where a process's executable is looked for: its env's PATH (the last one wins, as the launcher exports them in order), else the agent's. */
export function searchPathOf(env: readonly string[]): string {
  let found = AGENT_PATH;
  for (const kv of env) if (kv.startsWith('PATH=')) found = kv.slice('PATH='.length);
  return found;
}

/** Like execvp's search, done up front so that a missing binary fails the create, not later. */
export function resolveExecutable(exe: string, searchPath: string): string | undefined {
  if (exe.includes('/')) return isExecutableFile(exe) ? path.resolve(exe) : undefined;
  for (const dir of searchPath.split(':')) {
    if (dir === '') continue;
    const candidate = path.join(dir, exe);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function isExecutableFile(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}
