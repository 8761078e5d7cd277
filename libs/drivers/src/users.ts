import { accountEntries, DriverError, InvalidArgumentError } from '@agent/grpc-kit';
import { Driver as DriverNames } from '@agent/option';

const FIELD = 'spec.process.user';
/** 2^32 - 1 is (uid_t)-1, "no change" to setuid, never a real id. */
const MAX_ID = 4294967294;
const NAME = /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}\$?$/;

export interface ResolvedUser {
  readonly uid: number;
  readonly gid: number;
  /** The text it was resolved from, for messages. */
  readonly spec: string;
}

export interface UserFiles {
  readonly passwd?: string;
  readonly group?: string;
}

/**
 * "name", "uid", "uid:gid", "name:group" or "uid:group", looked up in
 * /etc/passwd and /etc/group. A bare uid must be in passwd: without it there is
 * no group to run with, and guessing one (0?) would be worse than refusing.
 */
export function resolveUser(spec: string, files: UserFiles = {}): ResolvedUser {
  const passwdFile = files.passwd ?? '/etc/passwd';
  const groupFile = files.group ?? '/etc/group';
  if (spec === '') throw new InvalidArgumentError(FIELD, 'must not be empty');
  const parts = spec.split(':');
  if (parts.length > 2) throw new InvalidArgumentError(FIELD, `expected "user" or "user:group", got ${JSON.stringify(spec)}`);
  const [userPart = '', groupPart] = parts;
  checkPart(userPart, 'user', spec);
  if (groupPart !== undefined) checkPart(groupPart, 'group', spec);

  let uid: number;
  let gid: number | undefined;
  if (isNumeric(userPart)) {
    uid = parseId(userPart, 'uid');
    if (groupPart === undefined) {
      const entry = readEntries(passwdFile).find((e) => e[2] === String(uid));
      if (!entry) throw new InvalidArgumentError(FIELD, `uid ${uid} is not in ${passwdFile}, so its group is unknown; name both as "uid:gid"`);
      gid = parseId(entry[3] ?? '', 'gid');
    }
  } else {
    const entry = readEntries(passwdFile).find((e) => e[0] === userPart);
    if (!entry) throw new InvalidArgumentError(FIELD, `no user ${JSON.stringify(userPart)} in ${passwdFile}`);
    uid = parseId(entry[2] ?? '', 'uid');
    gid = parseId(entry[3] ?? '', 'gid');
  }
  if (groupPart !== undefined) {
    if (isNumeric(groupPart)) {
      gid = parseId(groupPart, 'gid');
    } else {
      const entry = readEntries(groupFile).find((e) => e[0] === groupPart);
      if (!entry) throw new InvalidArgumentError(FIELD, `no group ${JSON.stringify(groupPart)} in ${groupFile}`);
      gid = parseId(entry[2] ?? '', 'gid');
    }
  }
  if (gid === undefined) throw new InvalidArgumentError(FIELD, `no group for ${JSON.stringify(spec)}`);
  return { uid, gid, spec };
}

function checkPart(part: string, what: string, spec: string): void {
  if (part === '') throw new InvalidArgumentError(FIELD, `empty ${what} in ${JSON.stringify(spec)}`);
  if (!isNumeric(part) && !NAME.test(part)) throw new InvalidArgumentError(FIELD, `${what} ${JSON.stringify(part)} is neither a number nor a valid name`);
}

function isNumeric(s: string): boolean {
  return /^[0-9]+$/.test(s);
}

function parseId(text: string, what: string): number {
  const n = isNumeric(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n > MAX_ID) throw new InvalidArgumentError(FIELD, `${what} ${JSON.stringify(text)} is out of range 0..${MAX_ID}`);
  return n;
}

function readEntries(file: string): string[][] {
  try {
    return accountEntries(file);
  } catch (err) {
    throw new DriverError(DriverNames.Process, `cannot read ${file} to resolve ${FIELD}: ${(err as Error).message}`, { cause: err });
  }
}
