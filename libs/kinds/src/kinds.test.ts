// The registry's checks: each failure names its field and has the status a
// user would expect; a limit a kind's driver cannot set is refused before any
// call (at create INVALID_ARGUMENT, at update FAILED_PRECONDITION).
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { FailedPreconditionError, InvalidArgumentError, PermissionDeniedError } from '@agent/grpc-kit';
import { loadConfig } from '@agent/option';
import { allLimits, NO_LIMITS } from '@agent/drivers';
import { v1 } from '@agent/proto';
import { admitWorkload, afterUpdate, checkCreateLimits, checkResources, checkUpdate, kindRow, toResources, redactWorkload, toChange, updateDiff, validateWorkload, type KindRow } from './index';

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
    assert.throws(() => checkUpdate(memoryOnly, res({ cpus: 0, memoryBytes: 0, pidsLimit: 5 }), undefined), refused('pids_limit'));
    assert.throws(() => checkUpdate(memoryOnly, res({ cpus: -1, memoryBytes: 0, pidsLimit: 0 }), undefined), refused('cpus'));
    checkUpdate(memoryOnly, res({ cpus: 0, memoryBytes: -1, pidsLimit: 0 }), undefined);
    checkUpdate(memoryOnly, undefined, undefined);
    for (const kind of [v1.Kind.KIND_CONTAINER, v1.Kind.KIND_PROCESS, v1.Kind.KIND_CGROUP]) checkUpdate(kindRow(kind), res({ cpus: 1, memoryBytes: 64 << 20, pidsLimit: 5 }), undefined);
  });

  it('refuses a text dimension the driver cannot set, and its removal', () => {
    assert.throws(() => checkCreateLimits(memoryOnly, res({ cpusetCpus: '0' })), field('spec.resources.cpuset_cpus'));
    assert.throws(() => checkUpdate(memoryOnly, res({ cpusetCpus: '-1' }), undefined), FailedPreconditionError);
  });

  it('maps Update semantics onto every dimension of the table: none keeps, -1 removes, the rest sets', () => {
    assert.deepEqual(toChange(res({ cpus: 2, memoryBytes: -1, cpusetCpus: '0-1', cpusetMems: '-1', cpuWeight: 0 }), NO_LIMITS), { cpus: 2, memoryBytes: 0, cpusetCpus: '0-1', cpusetMems: '' });
    const applied = res({ cpus: 2, cpusetCpus: '0', cpuWeight: 300 });
    // Same value, removal of what is not there: nothing to do; a new value and a real removal go through.
    assert.deepEqual(updateDiff(res({ cpus: 2, memoryBytes: -1, cpusetCpus: '1', cpuWeight: -1 }), applied), res({ cpusetCpus: '1', cpuWeight: -1 }));
    assert.deepEqual(afterUpdate(res({ cpus: 2, cpusetCpus: '0', cpuWeight: 300, memoryHighBytes: 1 << 30 }), res({ cpusetCpus: '1', cpuWeight: -1 })), res({ cpus: 2, cpusetCpus: '1', memoryHighBytes: 1 << 30 }));
  });

  it('maps Update semantics onto map dimensions key by key: a device named is set or (-1) removed, the others keep theirs', () => {
    const applied = res({ ioReadBps: { '8:0': 1000, '8:16': 2000 }, ioWriteBps: { '8:0': 3000 } });
    const req = res({ ioReadBps: { '8:0': 1500, '8:16': -1, '8:32': 4000 } });
    // The driver gets the whole new map; a map not named stays out of the change.
    assert.deepEqual(toChange(req, toResources(applied)), { ioReadBps: { '8:0': 1500, '8:32': 4000 } });
    // Only the devices that change something remain to do: a value it has, a removal of what it lacks, drop out.
    assert.deepEqual(updateDiff(res({ ioReadBps: { '8:0': 1000, '8:16': -1, '8:48': -1 }, ioWriteBps: { '8:0': 3000 } }), applied), res({ ioReadBps: { '8:16': -1 } }));
    assert.deepEqual(updateDiff(res({ ioWriteBps: { '8:0': 3000 } }), applied), res({}), 'nothing to do');
    assert.deepEqual(afterUpdate(applied, req), res({ ioReadBps: { '8:0': 1500, '8:32': 4000 }, ioWriteBps: { '8:0': 3000 } }));
    assert.deepEqual(afterUpdate(applied, res({ ioWriteBps: { '8:0': -1 } })).ioWriteBps, {}, 'the last device removed: no limit');
  });

  it('checks a map key by key, naming the key: MAJOR:MINOR devices, positive values, -1 only in an Update, at most 16', () => {
    const named = (f: string) => (e: unknown): boolean => e instanceof InvalidArgumentError && e.field === f;
    assert.throws(() => checkResources('spec.resources', res({ ioReadBps: { sda: 1000 } }), false), named('spec.resources.io_read_bps["sda"]'));
    assert.throws(() => checkResources('spec.resources', res({ ioWriteBps: { '8:0': 0 } }), false), named('spec.resources.io_write_bps["8:0"]'));
    assert.throws(() => checkResources('spec.resources', res({ ioWriteBps: { '8:0': -1 } }), false), named('spec.resources.io_write_bps["8:0"]'));
    assert.throws(() => checkResources('spec.resources', res({ ioReadBps: { '8:0': 2 ** 51 } }), false), named('spec.resources.io_read_bps["8:0"]'));
    assert.throws(() => checkResources('resources', res({ ioReadBps: { '8:x': -1 } }), true), named('resources.io_read_bps["8:x"]'));
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`8:${i}`, 1000]));
    assert.throws(() => checkResources('spec.resources', res({ ioReadBps: many }), false), named('spec.resources.io_read_bps'));
    checkResources('resources', res({ ioReadBps: { '8:0': -1, '8:16': 1 << 20 } }), true);
    checkResources('spec.resources', res({ ioReadBps: { '254:0': 1 << 20 } }), false);
  });

  it('a swap total needs memory and is at least it: INVALID_ARGUMENT at create, FAILED_PRECONDITION at update against the recorded limits', () => {
    const named = (f: string) => (e: unknown): boolean => e instanceof InvalidArgumentError && e.field === f;
    assert.throws(() => checkResources('spec.resources', res({ memorySwapBytes: 128 << 20 }), false), (e: Error) => named('spec.resources.memory_swap_bytes')(e) && /needs memory_bytes/.test(e.message));
    assert.throws(() => checkResources('spec.resources', res({ memoryBytes: 128 << 20, memorySwapBytes: 64 << 20 }), false), (e: Error) => named('spec.resources.memory_swap_bytes')(e) && /below memory_bytes/.test(e.message));
    checkResources('spec.resources', res({ memoryBytes: 64 << 20, memorySwapBytes: 64 << 20 }), false);
    const refused = (e: unknown): boolean => e instanceof FailedPreconditionError && e.message.startsWith('resources.memory_swap_bytes:');
    const row = kindRow(v1.Kind.KIND_PROCESS);
    assert.throws(() => checkUpdate(row, res({ memorySwapBytes: 128 << 20 }), res({ cpus: 1 })), refused, 'no memory recorded');
    assert.throws(() => checkUpdate(row, res({ memorySwapBytes: 32 << 20 }), res({ memoryBytes: 64 << 20 })), refused, 'below the recorded memory');
    assert.throws(() => checkUpdate(row, res({ memoryBytes: 256 << 20, memorySwapBytes: 128 << 20 }), res({ memoryBytes: 64 << 20, memorySwapBytes: 96 << 20 })), refused, 'below the memory asked with it');
    checkUpdate(row, res({ memorySwapBytes: 128 << 20 }), res({ memoryBytes: 64 << 20 }));
    checkUpdate(row, res({ memoryBytes: 64 << 20, memorySwapBytes: 128 << 20 }), undefined);
    // Memory alone keeps the swap allowance, so it is never refused for the swap.
    checkUpdate(row, res({ memoryBytes: 256 << 20 }), res({ memoryBytes: 64 << 20, memorySwapBytes: 96 << 20 }));
  });

  it('an Update of memory alone moves the swap total with it (the allowance stays); removing memory removes swap', () => {
    const spec = res({ memoryBytes: 64 << 20, memorySwapBytes: 96 << 20 });
    assert.equal(afterUpdate(spec, res({ memoryBytes: 128 << 20 })).memorySwapBytes, 160 << 20);
    assert.equal(afterUpdate(spec, res({ memoryBytes: 48 << 20 })).memorySwapBytes, 80 << 20);
    assert.equal(afterUpdate(spec, res({ memoryBytes: 128 << 20, memorySwapBytes: 128 << 20 })).memorySwapBytes, 128 << 20, 'both named: both as asked');
    assert.deepEqual(afterUpdate(spec, res({ memoryBytes: -1 })), res({}));
    assert.equal(afterUpdate(res({ memoryBytes: 64 << 20 }), res({ memoryBytes: 128 << 20 })).memorySwapBytes, 0, 'no swap limit stays none');
    // A total asked as the object has it still goes when memory moves (it would follow memory otherwise); alone it is nothing to do.
    const applied = res({ memoryBytes: 64 << 20, memorySwapBytes: 160 << 20 });
    assert.deepEqual(updateDiff(res({ memoryBytes: 128 << 20, memorySwapBytes: 160 << 20 }), applied), res({ memoryBytes: 128 << 20, memorySwapBytes: 160 << 20 }));
    assert.deepEqual(updateDiff(res({ memorySwapBytes: 160 << 20 }), applied), res({}));
    assert.deepEqual(updateDiff(res({ memoryBytes: 64 << 20, memorySwapBytes: -1 }), res({ memoryBytes: 64 << 20 })), res({}), 'removing a total it has not got');
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
