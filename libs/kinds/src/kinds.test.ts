// The registry's checks: each failure names its field and has the status a
// user would expect; a limit a kind's driver cannot set is refused before any
// call (at create INVALID_ARGUMENT, at update FAILED_PRECONDITION).
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { FailedPreconditionError, InvalidArgumentError, PermissionDeniedError } from '@agent/grpc-kit';
import { loadConfig } from '@agent/option';
import { allLimits } from '@agent/drivers';
import { v1 } from '@agent/proto';
import { admitWorkload, afterUpdate, checkCreateLimits, checkUpdate, kindRow, redactWorkload, toChange, updateDiff, validateWorkload, type KindRow } from './index';

const spec = (over: Partial<v1.ObjectSpec>): v1.ObjectSpec => v1.ObjectSpec.fromPartial({ name: 'x', kind: v1.Kind.KIND_CONTAINER, container: { image: 'local/busybox', command: ['sleep', '1'] }, ...over });
const field = (name: string) => (err: unknown): boolean => err instanceof InvalidArgumentError && err.message.startsWith(`${name}:`);

/** A kind whose driver sets memory but neither CPU nor pids (as a Kubernetes driver would have no pids limit). */
const memoryOnly: KindRow = { ...kindRow(v1.Kind.KIND_CGROUP), capabilities: { ...kindRow(v1.Kind.KIND_CGROUP).capabilities, limits: { ...allLimits(false), memoryBytes: true } } };
const res = (r: Partial<v1.Resources>): v1.Resources => v1.Resources.fromPartial(r);

describe('kinds registry checks', () => {
  it('names the kinds there are when the kind is missing or unknown', () => {
    assert.throws(() => validateWorkload(spec({ kind: v1.Kind.KIND_UNSPECIFIED })), (e: Error) => field('spec.kind')(e) && /KIND_CONTAINER, KIND_PROCESS, KIND_CGROUP/.test(e.message));
    assert.throws(() => validateWorkload(spec({ kind: 42 as v1.Kind })), (e: Error) => field('spec.kind')(e) && /unknown kind 42/.test(e.message));
  });

  it("requires the kind's own case and refuses another's", () => {
    assert.throws(() => validateWorkload(spec({ container: undefined })), field('spec.container'));
    assert.throws(() => validateWorkload(spec({ process: { command: ['sleep'], env: [], cwd: '', user: '' } })), field('spec.process'));
    assert.throws(() => validateWorkload(spec({ kind: v1.Kind.KIND_CGROUP, container: undefined, cgroup: { path: '../x' } })), field('spec.cgroup.path'));
    validateWorkload(spec({}));
  });

  it("runs the kind's own validator at its field", () => {
    assert.throws(() => validateWorkload(spec({ container: { image: 'Bad Image!', command: [], env: [] } })), field('spec.container.image'));
    assert.throws(() => validateWorkload(spec({ kind: v1.Kind.KIND_PROCESS, container: undefined, process: { command: ['sleep'], env: ['1=x'], cwd: '', user: '' } })), field('spec.process.env[0]'));
  });

  it('refuses at create a limit the driver cannot set, naming it (INVALID_ARGUMENT)', () => {
    assert.throws(() => checkCreateLimits(memoryOnly, res({ cpus: 0, memoryBytes: 64 << 20, pidsLimit: 10 })), (e: Error) => field('spec.resources.pids_limit')(e) && /KIND_CGROUP objects cannot be limited by pids_limit/.test(e.message));
    assert.throws(() => checkCreateLimits(memoryOnly, res({ cpus: 1, memoryBytes: 0, pidsLimit: 0 })), field('spec.resources.cpus'));
    checkCreateLimits(memoryOnly, res({ cpus: 0, memoryBytes: 64 << 20, pidsLimit: 0 }));
  });

  it('refuses an update the driver cannot do, setting or removing, before any call (FAILED_PRECONDITION)', () => {
    const refused = (name: string) => (e: unknown): boolean => e instanceof FailedPreconditionError && e.message.startsWith(`resources.${name}:`);
    assert.throws(() => checkUpdate(memoryOnly, res({ cpus: 0, memoryBytes: 0, pidsLimit: 5 })), refused('pids_limit'));
    assert.throws(() => checkUpdate(memoryOnly, res({ cpus: -1, memoryBytes: 0, pidsLimit: 0 })), refused('cpus'));
    checkUpdate(memoryOnly, res({ cpus: 0, memoryBytes: -1, pidsLimit: 0 }));
    checkUpdate(memoryOnly, undefined);
    for (const kind of [v1.Kind.KIND_CONTAINER, v1.Kind.KIND_PROCESS, v1.Kind.KIND_CGROUP]) checkUpdate(kindRow(kind), res({ cpus: 1, memoryBytes: 64 << 20, pidsLimit: 5 }));
  });

  it('refuses a text dimension the driver cannot set, and its removal', () => {
    assert.throws(() => checkCreateLimits(memoryOnly, res({ cpusetCpus: '0' })), field('spec.resources.cpuset_cpus'));
    assert.throws(() => checkUpdate(memoryOnly, res({ cpusetCpus: '-1' })), FailedPreconditionError);
  });

  it('maps Update semantics onto every dimension of the table: none keeps, -1 removes, the rest sets', () => {
    assert.deepEqual(toChange(res({ cpus: 2, memoryBytes: -1, cpusetCpus: '0-1', cpusetMems: '-1', cpuWeight: 0 })), { cpus: 2, memoryBytes: 0, cpusetCpus: '0-1', cpusetMems: '' });
    const applied = res({ cpus: 2, cpusetCpus: '0', cpuWeight: 300 });
    // Same value, removal of what is not there: nothing to do; a new value and a real removal go through.
    assert.deepEqual(updateDiff(res({ cpus: 2, memoryBytes: -1, cpusetCpus: '1', cpuWeight: -1 }), applied), res({ cpusetCpus: '1', cpuWeight: -1 }));
    assert.deepEqual(afterUpdate(res({ cpus: 2, cpusetCpus: '0', cpuWeight: 300, memoryHighBytes: 1 << 30 }), res({ cpusetCpus: '1', cpuWeight: -1 })), res({ cpus: 2, cpusetCpus: '1', memoryHighBytes: 1 << 30 }));
  });

  it('hides what each kind keeps secret from readers', () => {
    const c = redactWorkload(spec({ container: { image: 'i', command: [], env: ['PASSWORD=hunter2'] } }));
    assert.deepEqual(c.container?.env, ['PASSWORD=<redacted>']);
    const p = redactWorkload(spec({ kind: v1.Kind.KIND_PROCESS, container: undefined, process: { command: ['x'], env: ['TOKEN=abc'], cwd: '', user: '' } }));
    assert.deepEqual(p.process?.env, ['TOKEN=<redacted>']);
    const g = spec({ kind: v1.Kind.KIND_CGROUP, container: undefined, cgroup: { path: 'a' } });
    assert.equal(redactWorkload(g), g, 'nothing secret in a cgroup');
  });

  it("admits with the kind's host checks: a process gets its default user, a disallowed executable is PERMISSION_DENIED", () => {
    const config = loadConfig({ AGENT_DATA_DIR: '/tmp/agent-kinds-test', AGENT_PROCESS_USER: 'nobody', AGENT_PROCESS_ALLOW: '/usr/bin/env' });
    const proc = spec({ kind: v1.Kind.KIND_PROCESS, container: undefined, process: { command: ['/usr/bin/env'], env: [], cwd: '', user: '' } });
    assert.equal(admitWorkload(proc, config).process?.user, 'nobody');
    assert.throws(() => admitWorkload({ ...proc, process: { ...proc.process!, command: ['/bin/sh'] } }, config), PermissionDeniedError);
    const c = spec({});
    assert.equal(admitWorkload(c, config), c, 'containers have no host checks');
  });
});
