import { InvalidArgumentError } from '@agent/grpc-kit';
import { checkAllowedExecutable, checkRelativeCgroupPath, resolveExecutable, resolveUser, searchPathOf } from '@agent/drivers';
import { v1 } from '@agent/proto';

// Syntax checks of the public API. Each failure names the field, so that a
// user sees which part of the request to fix. State checks (unknown ids,
// names in use, deleted objects) are agentcore's.

export const LIMITS = {
  nameLength: 63,
  idLength: 64,
  requestIdLength: 128,
  imageLength: 255,
  argLength: 4096,
  args: 256,
  envEntries: 256,
  labels: 64,
  labelKeyLength: 63,
  labelValueLength: 255,
  cwdLength: 4096,
  maxCpus: 1024,
  /** Docker's own minimum; the kernel's is lower but anything below this is a mistake. */
  minMemoryBytes: 6 * 1024 * 1024,
  maxMemoryBytes: 2 ** 50,
  maxPids: 4_194_304,
  maxIntervalMs: 3_600_000,
} as const;

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const LABEL_KEY_RE = /^[a-zA-Z0-9]([a-zA-Z0-9_./-]*[a-zA-Z0-9])?$/;
const IMAGE_RE = /^[a-z0-9][a-z0-9._\-/:@]*$/i;
const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

function fail(field: string, reason: string): never {
  throw new InvalidArgumentError(field, reason);
}

function maxLen(field: string, s: string, n: number): void {
  if (s.length > n) fail(field, `longer than ${n} characters`);
}

export function checkObjectId(field: string, id: string): void {
  if (id === '') fail(field, 'required');
  maxLen(field, id, LIMITS.idLength);
}

export function checkLabels(field: string, labels: Record<string, string>): void {
  const entries = Object.entries(labels);
  if (entries.length > LIMITS.labels) fail(field, `more than ${LIMITS.labels} labels`);
  for (const [k, v] of entries) {
    if (k.length > LIMITS.labelKeyLength || !LABEL_KEY_RE.test(k)) fail(`${field}[${JSON.stringify(k)}]`, `key must be 1-${LIMITS.labelKeyLength} characters of letters, digits, "_", ".", "/", "-"`);
    if (k.startsWith('io.agent.')) fail(`${field}[${JSON.stringify(k)}]`, 'the io.agent. prefix is reserved for the agent');
    maxLen(`${field}[${JSON.stringify(k)}]`, v, LIMITS.labelValueLength);
  }
}

function checkArgv(field: string, args: readonly string[], required: boolean): void {
  if (required && args.length === 0) fail(field, 'required: at least the executable');
  if (args.length > LIMITS.args) fail(field, `more than ${LIMITS.args} arguments`);
  args.forEach((a, i) => {
    if (i === 0 && a === '') fail(`${field}[0]`, 'the executable must not be empty');
    maxLen(`${field}[${i}]`, a, LIMITS.argLength);
    if (a.includes('\0')) fail(`${field}[${i}]`, 'must not contain NUL');
  });
}

function checkEnv(field: string, env: readonly string[]): void {
  if (env.length > LIMITS.envEntries) fail(field, `more than ${LIMITS.envEntries} entries`);
  env.forEach((e, i) => {
    const eq = e.indexOf('=');
    if (eq <= 0 || !ENV_KEY_RE.test(e.slice(0, eq))) fail(`${field}[${i}]`, 'must be KEY=VALUE with a valid variable name');
    maxLen(`${field}[${i}]`, e, LIMITS.argLength);
    if (e.includes('\0')) fail(`${field}[${i}]`, 'must not contain NUL');
  });
}

/** Create: 0 is "no limit"; negative values are errors. */
function checkResources(field: string, r: v1.Resources | undefined, allowRemove: boolean): void {
  if (!r) return;
  const lowest = allowRemove ? -1 : 0;
  const hint = allowRemove ? ' (-1 removes the limit, 0 keeps it)' : ' (0 means no limit)';
  if (!Number.isFinite(r.cpus)) fail(`${field}.cpus`, 'must be a finite number');
  if (r.cpus < lowest || (r.cpus < 0 && r.cpus !== -1)) fail(`${field}.cpus`, `must not be negative${hint}`);
  if (r.cpus > LIMITS.maxCpus) fail(`${field}.cpus`, `more than ${LIMITS.maxCpus} cores`);
  if (r.cpus > 0 && r.cpus < 0.01) fail(`${field}.cpus`, 'at least 0.01 cores');
  if (r.memoryBytes < lowest || (r.memoryBytes < 0 && r.memoryBytes !== -1)) fail(`${field}.memory_bytes`, `must not be negative${hint}`);
  if (r.memoryBytes > 0 && r.memoryBytes < LIMITS.minMemoryBytes) fail(`${field}.memory_bytes`, `at least ${LIMITS.minMemoryBytes} bytes (6 MiB)`);
  if (r.memoryBytes > LIMITS.maxMemoryBytes) fail(`${field}.memory_bytes`, `more than ${LIMITS.maxMemoryBytes} bytes (1 PiB)`);
  if (r.pidsLimit < lowest || (r.pidsLimit < 0 && r.pidsLimit !== -1)) fail(`${field}.pids_limit`, `must not be negative${hint}`);
  if (r.pidsLimit > LIMITS.maxPids) fail(`${field}.pids_limit`, `more than ${LIMITS.maxPids}`);
}

export function validateCreate(req: v1.CreateRequest): void {
  maxLen('request_id', req.requestId, LIMITS.requestIdLength);
  const s = req.spec;
  if (!s) fail('spec', 'required');
  if (s.name === '') fail('spec.name', 'required');
  if (s.name.length > LIMITS.nameLength || !NAME_RE.test(s.name)) {
    fail('spec.name', `must be 1-${LIMITS.nameLength} characters of letters, digits, "_", ".", "-", starting with a letter or digit`);
  }
  if (s.kind === v1.Kind.KIND_UNSPECIFIED) fail('spec.kind', 'required: KIND_CONTAINER, KIND_PROCESS or KIND_CGROUP');
  if (!(s.kind in v1.Kind) || s.kind === v1.Kind.UNRECOGNIZED) fail('spec.kind', `unknown kind ${s.kind}`);
  checkLabels('spec.labels', s.labels);
  checkResources('spec.resources', s.resources, false);
  const set = { container: s.container !== undefined, process: s.process !== undefined, cgroup: s.cgroup !== undefined };
  const want = s.kind === v1.Kind.KIND_CONTAINER ? 'container' : s.kind === v1.Kind.KIND_PROCESS ? 'process' : 'cgroup';
  if (!set[want]) fail(`spec.${want}`, `required for ${v1.Kind[s.kind]}`);
  for (const other of ['container', 'process', 'cgroup'] as const) {
    if (other !== want && set[other]) fail(`spec.${other}`, `must not be set for ${v1.Kind[s.kind]}`);
  }
  if (s.container) {
    const c = s.container;
    if (c.image === '') fail('spec.container.image', 'required');
    if (c.image.length > LIMITS.imageLength || !IMAGE_RE.test(c.image)) fail('spec.container.image', 'not a valid image reference');
    checkArgv('spec.container.command', c.command, false);
    checkEnv('spec.container.env', c.env);
  }
  if (s.process) {
    const p = s.process;
    checkArgv('spec.process.command', p.command, true);
    checkEnv('spec.process.env', p.env);
    maxLen('spec.process.cwd', p.cwd, LIMITS.cwdLength);
    if (p.cwd !== '' && !p.cwd.startsWith('/')) fail('spec.process.cwd', 'must be an absolute path');
  }
  if (s.cgroup) {
    checkRelativeCgroupPath('spec.cgroup.path', s.cgroup.path);
    // Process objects live in proc-<object id>: a cgroup object there would be inside one of them.
    if (s.cgroup.path.startsWith('proc-')) fail('spec.cgroup.path', 'names beginning with "proc-" are reserved for the cgroups of process objects');
  }
}

export interface ProcessPolicy {
  /** AGENT_PROCESS_USER: who runs a process whose spec names nobody. */
  readonly defaultUser: string;
  /** AGENT_PROCESS_ALLOW: executables or directories; empty allows any. */
  readonly allow: readonly string[];
}

/**
 * Host checks of a process spec, answered at once rather than as a failed
 * create: the user must exist (INVALID_ARGUMENT), the executable must be
 * allowed (PERMISSION_DENIED). The spec comes back with its user filled in,
 * so that Get shows who the process runs as.
 */
export function checkProcessPolicy(p: v1.ProcessSpec, policy: ProcessPolicy): v1.ProcessSpec {
  const user = p.user === '' ? policy.defaultUser : p.user;
  maxLen('spec.process.user', user, LIMITS.nameLength);
  resolveUser(user);
  const exe = resolveExecutable(p.command[0] ?? '', searchPathOf(p.env));
  if (exe !== undefined) checkAllowedExecutable(policy.allow, exe);
  return { ...p, user };
}

export function validateUpdate(req: v1.UpdateRequest): void {
  checkObjectId('object_id', req.objectId);
  checkResources('resources', req.resources, true);
  checkLabels('labels', req.labels);
  const r = req.resources;
  const anyResource = r !== undefined && (r.cpus !== 0 || r.memoryBytes !== 0 || r.pidsLimit !== 0);
  if (!anyResource && Object.keys(req.labels).length === 0) fail('resources', 'nothing to update: set resources or labels');
}

export function validatePushOn(req: v1.PushOnRequest, minIntervalMs: number): void {
  checkObjectId('object_id', req.objectId);
  if (req.intervalMs <= 0) fail('interval_ms', 'required and positive');
  if (req.intervalMs < minIntervalMs) fail('interval_ms', `at least ${minIntervalMs} ms`);
  if (req.intervalMs > LIMITS.maxIntervalMs) fail('interval_ms', `at most ${LIMITS.maxIntervalMs} ms (1 h)`);
}

export function validateList(req: v1.ListRequest): void {
  if (!(req.kind in v1.Kind) || req.kind === v1.Kind.UNRECOGNIZED) fail('kind', `unknown kind ${req.kind}`);
  checkLabels('labels', req.labels);
  if (req.pageSize < 0) fail('page_size', 'must not be negative');
  maxLen('page_token', req.pageToken, 256);
}
