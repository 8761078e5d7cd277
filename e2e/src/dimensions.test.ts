// The resource dimensions through the public API (buf curl, the grpcurl
// stand-in): cpuset, CPU weight and memory high are created, read back,
// updated and removed on a real process, cgroup and container, and the
// cgroup files hold what Get says. Bad values name their field.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { api, BUSYBOX, startAgent, type Agent } from '@agent/testkit';

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

/** The dimensions of these tests as Get shows them (JSON leaves out what is zero or empty). */
function pick(a: Applied): Applied {
  return { cpusetCpus: a.cpusetCpus, cpuWeight: a.cpuWeight, memoryHighBytes: a.memoryHighBytes, memoryBytes: a.memoryBytes };
}
