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
  const denied = (): PermissionDeniedError => new PermissionDeniedError(`spec.process.command[0]: ${resolvedExe} is outside AGENT_PROCESS_ALLOW`);
  const exe = realpath(resolvedExe);
  if (exe === undefined) throw denied();
  for (const entry of allow) {
    const real = realpath(entry);
    if (real === undefined) continue;
    if (exe === real) return;
    if (isDirectory(real) && exe.startsWith(real === '/' ? '/' : real + path.sep)) return;
  }
  throw denied();
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
