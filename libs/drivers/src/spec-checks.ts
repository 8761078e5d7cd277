import { InvalidArgumentError } from '@agent/grpc-kit';

// Syntax checks shared by the drivers' spec validators and the apiserver's
// request checks. Each failure names the field, so that a user sees which
// part of the request to fix.

export const SPEC_LIMITS = {
  imageLength: 255,
  argLength: 4096,
  args: 256,
  envEntries: 256,
  cwdLength: 4096,
  /** Names of users and groups. */
  nameLength: 63,
} as const;

const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function fail(field: string, reason: string): never {
  throw new InvalidArgumentError(field, reason);
}

export function maxLen(field: string, s: string, n: number): void {
  if (s.length > n) fail(field, `longer than ${n} characters`);
}

/** An argv: at most SPEC_LIMITS.args entries, no NUL, and (when required) an executable. */
export function checkArgv(field: string, args: readonly string[], required: boolean): void {
  if (required && args.length === 0) fail(field, 'required: at least the executable');
  if (args.length > SPEC_LIMITS.args) fail(field, `more than ${SPEC_LIMITS.args} arguments`);
  args.forEach((a, i) => {
    if (i === 0 && a === '') fail(`${field}[0]`, 'the executable must not be empty');
    maxLen(`${field}[${i}]`, a, SPEC_LIMITS.argLength);
    if (a.includes('\0')) fail(`${field}[${i}]`, 'must not contain NUL');
  });
}

/** KEY=VALUE entries with valid variable names. */
export function checkEnv(field: string, env: readonly string[]): void {
  if (env.length > SPEC_LIMITS.envEntries) fail(field, `more than ${SPEC_LIMITS.envEntries} entries`);
  env.forEach((e, i) => {
    const eq = e.indexOf('=');
    if (eq <= 0 || !ENV_KEY_RE.test(e.slice(0, eq))) fail(`${field}[${i}]`, 'must be KEY=VALUE with a valid variable name');
    maxLen(`${field}[${i}]`, e, SPEC_LIMITS.argLength);
    if (e.includes('\0')) fail(`${field}[${i}]`, 'must not contain NUL');
  });
}

/** What a reader sees in place of a secret's value. */
export const REDACTED = '<redacted>';

/** What a reader sees of an environment: which variables, not their values (passwords live there). */
export function redactEnv(env: readonly string[]): string[] {
  return env.map((kv) => `${kv.slice(0, Math.max(kv.indexOf('='), 0))}=${REDACTED}`);
}
