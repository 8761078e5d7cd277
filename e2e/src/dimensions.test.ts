// The resource dimensions through the public API (buf curl, the grpcurl
// stand-in): cpuset, CPU weight, memory high, the swap total and per-device
// io limits are created, read back, updated and removed on a real process,
// cgroup and container, and the cgroup files hold what Get says. Bad values
// name their field.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { api, blockDevices, BUSYBOX, startAgent, type Agent } from '@agent/testkit';

const MiB = 1024 * 1024;
const lastCpu = String(os.cpus().length - 1);

/** A v1 controller's file of a pid's cgroup (this host runs v1; v2 is covered on the simulated tree). */
function cgroupFile(pid: number, ctrl: string, file: string): string {
  const line = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes(ctrl));
  assert.ok(line, `no ${ctrl} line for ${pid}`);
  return fs.readFileSync(path.join('/sys/fs/cgroup', ctrl, line.split(':')[2] ?? '/', file), 'utf8').trim();
}

interface Applied {
  cpusetCpus?: string;
  cpuWeight?: number;
  memoryHighBytes?: string;
  memoryBytes?: string;
}

describe('resource dimensions through the API (real process, container, cgroup; cgroup v1)', { skip: !fs.existsSync('/sys/fs/cgroup/cpuset') && 'needs cgroup v1 cpuset' }, () => {
  let agent: Agent;
  before(async () => (agent = await startAgent()));
  after(async () => agent?.stop());

  const resources = { cpuset_cpus: '0', cpu_weight: 300, memory_high_bytes: String(48 * MiB), memory_bytes: String(64 * MiB) };
  const specs: Array<[string, Record<string, unknown>]> = [
    ['process', { kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] } }],
    ['container', { kind: 'KIND_CONTAINER', container: { image: BUSYBOX, command: ['sleep', '600'] } }],
  ];

  for (const [what, spec] of specs) {
    it(`a ${what} gets cpuset, weight and memory high, shows them in Get, and changes and drops them by Update`, async () => {
      const made = await api(agent, 'Create', { spec: { name: `dims-${what}`, resources, ...spec }, wait: true });
      assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made.body));
      const id = made.body.objectId as string;
      const got = await api(agent, 'Get', { object_id: id });
      const pid = got.body.pid as number;
      assert.deepEqual(pick(got.body.appliedResources as Applied), { cpusetCpus: '0', cpuWeight: 300, memoryHighBytes: String(48 * MiB), memoryBytes: String(64 * MiB) });
      assert.equal(cgroupFile(pid, 'cpuset', 'cpuset.cpus'), '0');
      assert.equal(cgroupFile(pid, 'cpu', 'cpu.shares'), '3072');
      assert.equal(cgroupFile(pid, 'memory', 'memory.soft_limit_in_bytes'), String(48 * MiB));

      const changed = await api(agent, 'Update', { object_id: id, resources: { cpuset_cpus: lastCpu, cpu_weight: 50, memory_high_bytes: String(32 * MiB) }, wait: true });
      assert.equal(changed.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(changed.body));
      const after1 = await api(agent, 'Get', { object_id: id });
      assert.deepEqual(pick(after1.body.appliedResources as Applied), { cpusetCpus: lastCpu === '0' ? undefined : lastCpu, cpuWeight: 50, memoryHighBytes: String(32 * MiB), memoryBytes: String(64 * MiB) });
      assert.equal(cgroupFile(pid, 'cpu', 'cpu.shares'), '512');
      assert.equal((after1.body.spec as { resources: { cpuWeight: number } }).resources.cpuWeight, 50, 'the spec follows the update');

      // -1 removes a limit (the default weight, no threshold); a container's cpuset stays Docker's to keep.
      const dropped = await api(agent, 'Update', { object_id: id, resources: { cpu_weight: -1, memory_high_bytes: '-1', ...(what === 'process' ? { cpuset_cpus: '-1' } : {}) }, wait: true });
      assert.equal(dropped.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(dropped.body));
      const after2 = await api(agent, 'Get', { object_id: id });
      const a2 = pick(after2.body.appliedResources as Applied);
      assert.equal(a2.cpuWeight, undefined, 'no weight: the default');
      assert.equal(a2.memoryHighBytes, undefined);
      assert.equal(cgroupFile(pid, 'cpu', 'cpu.shares'), '1024');
      if (what === 'process') {
        assert.equal(a2.cpusetCpus, undefined, 'no cpuset: every CPU');
        assert.equal(cgroupFile(pid, 'cpuset', 'cpuset.cpus'), fs.readFileSync('/sys/fs/cgroup/cpuset/cpuset.cpus', 'utf8').trim());
      }
      await api(agent, 'Delete', { object_id: id, wait: true });
    });
  }

  it('a bare cgroup holds the same dimensions', async () => {
    const made = await api(agent, 'Create', { spec: { name: 'dims-cgroup', kind: 'KIND_CGROUP', cgroup: { path: 'dims' }, resources }, wait: true });
    assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made.body));
    const dir = (ctrl: string): string => path.join('/sys/fs/cgroup', ctrl, agent.cgroupParent, 'dims');
    assert.equal(fs.readFileSync(path.join(dir('cpuset'), 'cpuset.cpus'), 'utf8').trim(), '0');
    assert.equal(fs.readFileSync(path.join(dir('cpu'), 'cpu.shares'), 'utf8').trim(), '3072');
    const got = await api(agent, 'Get', { object_id: made.body.objectId });
    assert.deepEqual(pick(got.body.appliedResources as Applied), { cpusetCpus: '0', cpuWeight: 300, memoryHighBytes: String(48 * MiB), memoryBytes: String(64 * MiB) });
    await api(agent, 'Delete', { object_id: made.body.objectId, wait: true });
  });

  it('a bad value is INVALID_ARGUMENT naming the dimension', async () => {
    const bad = await api(agent, 'Create', { spec: { name: 'bad', kind: 'KIND_PROCESS', process: { command: ['sleep', '1'] }, resources: { cpu_weight: 20000 } } });
    assert.equal(bad.error?.code, 'invalid_argument');
    assert.match(bad.error?.message ?? '', /^spec\.resources\.cpu_weight: an integer from 1 to 10000/);
    const list = await api(agent, 'Create', { spec: { name: 'bad', kind: 'KIND_PROCESS', process: { command: ['sleep', '1'] }, resources: { cpuset_cpus: '1-0' } } });
    assert.match(list.error?.message ?? '', /^spec\.resources\.cpuset_cpus: range 1-0 is backwards/);
  });
});

interface SwapIo {
  memoryBytes?: string;
  memorySwapBytes?: string;
  ioReadBps?: Record<string, string>;
  ioWriteBps?: Record<string, string>;
}

const [disk = '', disk2 = ''] = blockDevices();
const pickSwapIo = (a: SwapIo): SwapIo => ({ memoryBytes: a.memoryBytes, memorySwapBytes: a.memorySwapBytes, ioReadBps: a.ioReadBps, ioWriteBps: a.ioWriteBps });

describe('swap and per-device io limits through the API (real process, container, cgroup; cgroup v1)', { skip: !(fs.existsSync('/sys/fs/cgroup/blkio') && disk2) && 'needs cgroup v1 blkio and two block devices' }, () => {
  let agent: Agent;
  before(async () => (agent = await startAgent()));
  after(async () => agent?.stop());

  const resources = { memory_bytes: String(64 * MiB), memory_swap_bytes: String(96 * MiB), io_read_bps: { [disk]: String(MiB), [disk2]: String(2 * MiB) }, io_write_bps: { [disk]: String(4 * MiB) } };
  const specs: Array<[string, Record<string, unknown>]> = [
    ['process', { kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] } }],
    ['container', { kind: 'KIND_CONTAINER', container: { image: BUSYBOX, command: ['sleep', '600'] } }],
    ['cgroup', { kind: 'KIND_CGROUP', cgroup: { path: 'swap-io' } }],
  ];
  /** A v1 file of the object's cgroup: by its pid, or (a bare cgroup) by its path below the hierarchy. */
  const fileOf = (body: { pid?: number; runtimeId?: string }, ctrl: string, file: string): string =>
    body.pid ? cgroupFile(body.pid, ctrl, file) : fs.readFileSync(path.join('/sys/fs/cgroup', ctrl, body.runtimeId ?? '', file), 'utf8').trim();

  for (const [what, spec] of specs) {
    it(`a ${what} gets a swap total and read/write limits per device, shows them in Get, and an Update changes one device and removes another`, async () => {
      const made = await api(agent, 'Create', { spec: { name: `swap-io-${what}`, resources, ...spec }, wait: true });
      assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made.body));
      const id = made.body.objectId as string;
      const got = await api(agent, 'Get', { object_id: id });
      assert.deepEqual(pickSwapIo(got.body.appliedResources as SwapIo), { memoryBytes: String(64 * MiB), memorySwapBytes: String(96 * MiB), ioReadBps: { [disk]: String(MiB), [disk2]: String(2 * MiB) }, ioWriteBps: { [disk]: String(4 * MiB) } });
      assert.equal(fileOf(got.body, 'memory', 'memory.memsw.limit_in_bytes'), String(96 * MiB));
      assert.deepEqual(fileOf(got.body, 'blkio', 'blkio.throttle.read_bps_device').split('\n').sort(), [`${disk} ${MiB}`, `${disk2} ${2 * MiB}`].sort());
      assert.equal(fileOf(got.body, 'blkio', 'blkio.throttle.write_bps_device'), `${disk} ${4 * MiB}`);

      // One device changes, another goes (-1), the write map is not named and stays; memory alone moves the swap total by as much.
      const changed = await api(agent, 'Update', { object_id: id, resources: { io_read_bps: { [disk]: String(3 * MiB), [disk2]: -1 }, memory_bytes: String(128 * MiB) }, wait: true });
      assert.equal(changed.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(changed.body));
      const after1 = await api(agent, 'Get', { object_id: id });
      const want = { memoryBytes: String(128 * MiB), memorySwapBytes: String(160 * MiB), ioReadBps: { [disk]: String(3 * MiB) }, ioWriteBps: { [disk]: String(4 * MiB) } };
      assert.deepEqual(pickSwapIo(after1.body.appliedResources as SwapIo), want);
      assert.deepEqual(pickSwapIo((after1.body.spec as { resources: SwapIo }).resources), want, 'the spec follows the update');
      assert.equal(fileOf(after1.body, 'blkio', 'blkio.throttle.read_bps_device'), `${disk} ${3 * MiB}`);
      assert.equal(fileOf(after1.body, 'memory', 'memory.memsw.limit_in_bytes'), String(160 * MiB));

      // A swap total below memory is refused before anything is queued, naming the field.
      const low = await api(agent, 'Update', { object_id: id, resources: { memory_swap_bytes: String(64 * MiB) } });
      assert.equal(low.error?.code, 'failed_precondition', JSON.stringify(low));
      assert.match(low.error?.message ?? '', /^resources\.memory_swap_bytes: below memory_bytes/);
      await api(agent, 'Delete', { object_id: id, wait: true });
    });
  }

  it('a bad device key is INVALID_ARGUMENT naming it; a device the host lacks fails the create naming it', async () => {
    const bad = await api(agent, 'Create', { spec: { name: 'bad', kind: 'KIND_PROCESS', process: { command: ['sleep', '1'] }, resources: { io_read_bps: { sda: 1024 } } } });
    assert.equal(bad.error?.code, 'invalid_argument');
    assert.match(bad.error?.message ?? '', /^spec\.resources\.io_read_bps\["sda"\]: not a block device/);
    const none = await api(agent, 'Create', { spec: { name: 'nodev', kind: 'KIND_PROCESS', process: { command: ['sleep', '1'] }, resources: { io_write_bps: { '259:999': 1024 } } }, wait: true });
    assert.equal(none.body.state, 'STATE_FAILED', JSON.stringify(none.body));
    assert.match(none.body.error as string, /spec\.resources\.io_write_bps: this host has no block device 259:999/);
    await api(agent, 'Delete', { object_id: none.body.objectId, wait: true });
  });
});

/** The dimensions of these tests as Get shows them (JSON leaves out what is zero or empty). */
function pick(a: Applied): Applied {
  return { cpusetCpus: a.cpusetCpus, cpuWeight: a.cpuWeight, memoryHighBytes: a.memoryHighBytes, memoryBytes: a.memoryBytes };
}
