// One contract, every object driver: the same cases run against the docker,
// process and cgroup drivers on the real engine and the real cgroup tree.
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NotFoundError, NotSupportedError } from '@agent/grpc-kit';
import { Label } from '@agent/option';
import { CgroupDriver } from './cgroup-driver';
import { CgroupFs } from './cgroup-fs';
import { DockerDriver } from './docker-driver';
import type { Driver } from './driver';
import { isAlive } from './proc-figures';
import { ProcessDriver } from './process-driver';
import type { Runtime, WorkloadSpec } from './types';

const MiB = 1024 * 1024;
const parent = `agent-contract-${randomBytes(4).toString('hex')}`;
const cgfs = new CgroupFs(parent);
const cgroup = new CgroupDriver(cgfs);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-contract-'));
const drivers: Array<{ driver: Driver; spec: (id: string) => Partial<WorkloadSpec> }> = [
  { driver: cgroup, spec: (id) => ({ cgroup: { path: `contract/${id}` } }) },
  {
    driver: new ProcessDriver(cgroup, { logDir: dataDir, defaultCwd: '/', stopGraceMs: 1000, defaultUser: 'nobody', allow: [] }),
    spec: () => ({ process: { command: ['sleep', '600'], env: ['FOO=bar'], cwd: '', user: '' } }),
  },
  {
    driver: new DockerDriver(cgroup, { socketPath: '/var/run/docker.sock', hostId: 'contract', stopGraceMs: 1000 }),
    spec: () => ({ container: { image: 'local/busybox:latest', command: ['sleep', '600'], env: [] } }),
  },
];

function file(rt: Runtime, ctrl: string, v1: string, v2: string): string {
  const dir = rt.cgroup.version === 'v2' ? rt.cgroup.paths.unified : rt.cgroup.paths[ctrl];
  assert.ok(dir, `no ${ctrl} dir`);
  return fs.readFileSync(path.join(dir, rt.cgroup.version === 'v2' ? v2 : v1), 'utf8').trim();
}

after(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
  for (const dir of Object.values(cgfs.refFor('').paths)) fs.rmSync(path.join(dir, 'contract'), { recursive: true, force: true });
  for (const dir of Object.values(cgfs.refFor('').paths)) fs.rmSync(dir, { recursive: true, force: true });
});

for (const { driver, spec } of drivers) {
  describe(`${driver.name} driver contract`, () => {
    const id = `c${randomBytes(4).toString('hex')}`;
    let rt: Runtime;

    it('says what it can do', () => {
      assert.equal(driver.capabilities.lifecycle, true);
      assert.equal(driver.capabilities.stats, true);
      assert.equal(driver.capabilities.report, false);
    });

    it('is healthy', async () => {
      await driver.health();
    });

    it('creates with limits that the cgroup files hold', async () => {
      rt = await driver.create({ objectId: id, name: id, labels: { suite: 'contract' }, resources: { cpus: 0.5, memoryBytes: 64 * MiB, pidsLimit: 32 }, ...spec(id) });
      assert.equal(rt.running, true);
      assert.deepEqual(rt.applied, { cpus: 0.5, memoryBytes: 64 * MiB, pidsLimit: 32 });
      assert.equal(file(rt, 'memory', 'memory.limit_in_bytes', 'memory.max'), String(64 * MiB));
      assert.equal(file(rt, 'pids', 'pids.max', 'pids.max'), '32');
    });

    it('reads figures that match the cgroup files', () => {
      const f = driver.stats(rt);
      assert.equal(f.memoryLimitBytes, 64 * MiB);
      assert.equal(f.pids, Number(file(rt, 'pids', 'pids.current', 'pids.current')));
      const usage = Number(file(rt, 'memory', 'memory.usage_in_bytes', 'memory.current'));
      assert.ok(Math.abs((f.memoryUsageBytes ?? -1) - usage) <= 64 * 1024, `${f.memoryUsageBytes} vs ${usage}`);
      assert.ok((f.cpuUsageNs ?? -1) >= 0);
      if (rt.pid > 0 && driver.name === 'docker') assert.ok((f.netRxBytes ?? -1) >= 0, 'a container has its own network namespace');
      if (driver.name !== 'docker') assert.equal(f.netRxBytes, undefined, 'no network figures of its own');
    });

    it('updates limits and reads them back from the object', async () => {
      rt = await driver.update(rt, { memoryBytes: 96 * MiB, pidsLimit: 64 });
      assert.equal(rt.applied.memoryBytes, 96 * MiB);
      assert.equal(rt.applied.pidsLimit, 64);
      assert.equal(rt.applied.cpus, 0.5, 'an update keeps what it does not name');
      assert.equal(file(rt, 'memory', 'memory.limit_in_bytes', 'memory.max'), String(96 * MiB));
    });

    it('inspects a running object', async () => {
      const seen = await driver.inspect(rt);
      assert.equal(seen.running, true);
      assert.equal(seen.applied.memoryBytes, 96 * MiB);
    });

    it('refuses what it cannot do, loudly', async () => {
      await assert.rejects(driver.push({ hostId: 'h', reports: [] }), NotSupportedError);
    });

    it('finds a finished create from the object id alone (a kill before its runtime was recorded)', async () => {
      const found = await driver.adopt({ objectId: id, name: id, labels: {}, resources: { cpus: 0, memoryBytes: 0, pidsLimit: 0 }, ...spec(id) }, undefined);
      assert.equal(found.runtimeId, rt.runtimeId);
      assert.equal(found.pid, rt.pid);
      assert.equal(found.running, true);
    });

    it('purges whatever carries an object\'s marks, recorded or not, and purging again succeeds', async () => {
      const other = `p${randomBytes(4).toString('hex')}`;
      const s: WorkloadSpec = { objectId: other, name: other, labels: {}, resources: { cpus: 0, memoryBytes: 0, pidsLimit: 0 }, ...spec(other) };
      const made = await driver.create(s);
      await driver.purge(s);
      for (const d of Object.values(made.cgroup.paths)) assert.equal(fs.existsSync(d), false, `${d} left behind`);
      if (made.pid > 0) assert.equal(isAlive(made.pid), false, 'process left behind');
      await assert.rejects(driver.adopt(s, undefined), NotFoundError);
      await driver.purge(s);
    });

    it('removes everything, and removing again succeeds', async () => {
      const dirs = Object.values(rt.cgroup.paths);
      await driver.remove(rt);
      for (const d of dirs) assert.equal(fs.existsSync(d), false, `${d} left behind`);
      if (rt.pid > 0) assert.equal(isAlive(rt.pid), false, 'process left behind');
      await driver.remove(rt);
    });
  });
}

describe('docker driver: a half-made container (created, never started)', () => {
  const docker = drivers[2]!.driver as DockerDriver;
  const objectId = `h${randomBytes(4).toString('hex')}`;
  const spec: WorkloadSpec = { objectId, name: objectId, labels: {}, resources: { cpus: 0, memoryBytes: 0, pidsLimit: 0 }, container: { image: 'local/busybox:latest', command: ['sleep', '600'], env: [] } };

  it('is not adopted, is purged, and a create of the object takes its name back', async () => {
    // What a kill between docker create and start leaves: the container under the name create gives it.
    const half = await docker.docker.createContainer({ name: `agent-${objectId}-${objectId.slice(-8)}`, Image: 'local/busybox:latest', Cmd: ['sleep', '600'], Labels: { [Label.Managed]: 'true', [Label.ObjectId]: objectId, [Label.HostId]: 'contract' } });
    await assert.rejects(docker.adopt(spec, undefined), (err: Error) => err instanceof NotFoundError && /never started/.test(err.message));
    const rt = await docker.create(spec); // the name is taken by the half-made one: it goes first
    assert.notEqual(rt.runtimeId, half.id);
    await assert.rejects(half.inspect(), /no such container/i);
    await docker.purge(spec);
    await assert.rejects(docker.docker.getContainer(rt.runtimeId).inspect(), /no such container/i);
  });
});
