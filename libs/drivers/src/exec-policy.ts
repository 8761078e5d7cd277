import * as fs from 'node:fs';
import * as path from 'node:path';
import { PermissionDeniedError } from '@agent/grpc-kit';

/**
 * AGENT_PROCESS_ALLOW: an empty list allows any executable; otherwise the
 * executable must be one of the listed files or lie beneath one of the listed
 * directories. Both sides are compared as real paths, so a symlink (or "..")
 * cannot lead from an allowed name to a file outside, nor the other way.
 * Entries that do not exist allow nothing.
 */
export function checkAllowedExecutable(allow: readonly string[], resolvedExe: string): void {
  if (allow.length === 0) return;
  if (!insideAllowList(allow, resolvedExe)) throw new PermissionDeniedError(`spec.process.command[0]: ${resolvedExe} is outside AGENT_PROCESS_ALLOW`);
}

/**
 * Whether file is one of the listed files or lies beneath one of the listed
 * directories, compared as real paths (a symlink or ".." cannot lead out).
 * A file or entry that does not exist matches nothing.
 */
export function insideAllowList(allow: readonly string[], file: string): boolean {
  const real = realpath(file);
  if (real === undefined) return false;
  for (const entry of allow) {
    const allowed = realpath(entry);
    if (allowed === undefined) continue;
    if (real === allowed) return true;
    if (isDirectory(allowed) && real.startsWith(allowed === '/' ? '/' : allowed + path.sep)) return true;
  }
  return false;
}

function realpath(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
