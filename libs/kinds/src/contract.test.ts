// One contract, every kind: the same cases run against the driver of each row
// of the kinds registry (docker, process, cgroup here) on the real engine and
// the real cgroup tree. What a driver cannot do is behind its capabilities:
// the cgroup-file checks run only for drivers whose workloads live in a cgroup.
// A new kind gets a fixture below (a compile error until it has one).
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NotFoundError, NotSupportedError } from '@agent/grpc-kit';
import { loadConfig } from '@agent/option';
import { isAlive, type Runtime, type WorkloadSpec } from '@agent/drivers';
import { v1 } from '@agent/proto';
import { createHostDrivers, KINDS, type WorkloadField } from './index';

const MiB = 1024 * 1024;

/** Each kind's spec for the contract: a workload that runs until removed. */
const FIXTURES: Readonly<Record<WorkloadField, (id: string) => unknown>> = {
  container: () => ({ image: 'local/busybox:latest', command: ['sleep', '600'], env: [] }),
  process: () => ({ command: ['sleep', '600'], env: ['FOO=bar'], cwd: '', user: '' }),
  cgroup: (id) => ({ path: `contract/${id}` }),
};

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-contract-'));
const config = loadConfig({ AGENT_DATA_DIR: dataDir, AGENT_CGROUP_PARENT: `agent-contract-${randomBytes(4).toString('hex')}`, AGENT_HOST_ID: 'contract', AGENT_STOP_GRACE_MS: '1000', AGENT_LOG_LEVEL: 'error' });
const host = createHostDrivers(config);

after(async () => {
  for (const d of host.objects.values()) await d.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
  const root = host.cgroup.fs.refFor('').paths;
  for (const dir of Object.values(root)) fs.rmSync(path.join(dir, 'contract'), { recursive: true, force: true });
  for (const dir of Object.values(root)) fs.rmSync(dir, { recursive: true, force: true });
});

function file(rt: Runtime, ctrl: string, v1file: string, v2file: string): string {
  const dir = rt.cgroup.version === 'v2' ? rt.cgroup.paths.unified : rt.cgroup.paths[ctrl];
  assert.ok(dir, `no ${ctrl} dir`);
  return fs.readFileSync(path.join(dir, rt.cgroup.version === 'v2' ? v2file : v1file), 'utf8').trim();
}

function specFor(field: WorkloadField, id: string, resources = { cpus: 0, memoryBytes: 0, pidsLimit: 0 }): WorkloadSpec {
  return { objectId: id, name: id, labels: { suite: 'contract' }, resources, workload: FIXTURES[field](id) };
}

describe('kinds registry', () => {
  it('every kind has its own case and driver, and the host has each driver', () => {
    assert.equal(new Set(KINDS.map((r) => r.field)).size, KINDS.length);
    assert.equal(new Set(KINDS.map((r) => r.driver)).size, KINDS.length);
    for (const r of KINDS) assert.ok(host.objects.get(r.driver), `no ${r.driver} driver`);
    assert.deepEqual(Object.keys(FIXTURES).sort(), KINDS.map((r) => r.field).sort(), 'every kind runs the contract');
  });
});

for (const row of KINDS) {
  const driver = host.objects.get(row.driver)!;
  const caps = row.capabilities;
  const limits = { cpus: caps.limits.cpus ? 0.5 : 0, memoryBytes: caps.limits.memoryBytes ? 64 * MiB : 0, pidsLimit: caps.limits.pidsLimit ? 32 : 0 };

  describe(`${driver.name} driver contract (${v1.Kind[row.kind]})`, () => {
    const id = `c${randomBytes(4).toString('hex')}`;
    let rt: Runtime;

    it('says what it can do, as its registry row says', () => {
      assert.deepEqual(driver.capabilities, caps);
      assert.equal(caps.lifecycle, true);
      assert.equal(caps.report, false);
    });

    it('is healthy', async () => {
      await driver.health();
    });

    it('creates with the limits it can set, read back from the object', async () => {
      rt = await driver.create(specFor(row.field, id, limits));
      assert.equal(rt.running, true);
      assert.deepEqual(rt.applied, limits);
      if (!caps.cgroup) return;
      if (caps.limits.memoryBytes) assert.equal(file(rt, 'memory', 'memory.limit_in_bytes', 'memory.max'), String(64 * MiB));
      if (caps.limits.pidsLimit) assert.equal(file(rt, 'pids', 'pids.max', 'pids.max'), '32');
    });

    it('samples figures that match the cgroup files (capability stats, cgroup)', { skip: !(caps.stats && caps.cgroup) }, () => {
      const sampler = driver.sampler(rt);
      try {
        const f = sampler.read();
        assert.equal(f.memoryLimitBytes, 64 * MiB);
        assert.equal(f.pids, Number(file(rt, 'pids', 'pids.current', 'pids.current')));
        const usage = Number(file(rt, 'memory', 'memory.usage_in_bytes', 'memory.current'));
        assert.ok(Math.abs((f.memoryUsageBytes ?? -1) - usage) <= 64 * 1024, `${f.memoryUsageBytes} vs ${usage}`);
        assert.ok((f.cpuUsageNs ?? -1) >= 0);
        if (caps.network && rt.pid > 0) assert.ok((f.netRxBytes ?? -1) >= 0, 'a workload with its own address has its own network namespace');
        if (!caps.network) assert.equal(f.netRxBytes, undefined, 'no network figures of its own');
      } finally {
        sampler.close();
      }
    });

    it('samples nothing it does not have (no stats: every figure unset)', { skip: caps.stats }, () => {
      const sampler = driver.sampler(rt);
      assert.deepEqual(sampler.read(), {});
      sampler.close();
    });

    it('updates a limit and reads it back from the object, keeping what it does not name', { skip: !caps.limits.memoryBytes }, async () => {
      rt = await driver.update(rt, { memoryBytes: 96 * MiB, ...(caps.limits.pidsLimit ? { pidsLimit: 64 } : {}) });
      assert.equal(rt.applied.memoryBytes, 96 * MiB);
      if (caps.limits.pidsLimit) assert.equal(rt.applied.pidsLimit, 64);
      assert.equal(rt.applied.cpus, limits.cpus, 'an update keeps what it does not name');
      if (caps.cgroup) assert.equal(file(rt, 'memory', 'memory.limit_in_bytes', 'memory.max'), String(96 * MiB));
    });

    it('inspects a running object', async () => {
      const seen = await driver.inspect(rt);
      assert.equal(seen.running, true);
      assert.deepEqual(seen.applied, rt.applied);
    });

    it('refuses what it cannot do, loudly', async () => {
      await assert.rejects(driver.push({ hostId: 'h', reports: [] }), NotSupportedError);
    });

    it('finds a finished create from the object id alone (a kill before its runtime was recorded)', async () => {
      const found = await driver.adopt(specFor(row.field, id), undefined);
      assert.equal(found.runtimeId, rt.runtimeId);
      assert.equal(found.pid, rt.pid);
      assert.equal(found.running, true);
    });

    it("purges whatever carries an object's marks, recorded or not, and purging again succeeds", async () => {
      const other = `p${randomBytes(4).toString('hex')}`;
      const s = specFor(row.field, other);
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
      await assert.rejects(driver.adopt(specFor(row.field, id), undefined), NotFoundError);
      await driver.remove(rt);
    });
  });
}
