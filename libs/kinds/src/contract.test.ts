// One contract, every kind: the same cases run against the driver of each row
// of the kinds registry: docker, process and cgroup on the real engine and
// the real cgroup tree, k8s on the FAKE apiserver (libs/testkit: no real one
// can run here). What a driver cannot do is behind its capabilities:
// the cgroup-file checks run only for drivers whose workloads live in a cgroup.
// A new kind gets a fixture below (a compile error until it has one).
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NotFoundError, NotSupportedError } from '@agent/grpc-kit';
import { Driver, loadConfig } from '@agent/option';
import { DIMENSIONS, isAlive, isNone, limits, NO_LIMITS, type CgroupVersion, type Limit, type Resources, type Runtime, type WorkloadSpec } from '@agent/drivers';
import { FailedPreconditionError } from '@agent/grpc-kit';
import { v1 } from '@agent/proto';
import { blockDevices, kubeTools, startFakeKube, type FakeKube } from '@agent/testkit';
import { createHostDrivers, KINDS, type WorkloadField } from './index';

const MiB = 1024 * 1024;

/** Each kind's spec for the contract: a workload that runs until removed. */
const FIXTURES: Readonly<Record<WorkloadField, (id: string) => unknown>> = {
  container: () => ({ image: 'local/busybox:latest', command: ['sleep', '600'], env: [] }),
  process: () => ({ command: ['sleep', '600'], env: ['FOO=bar'], cwd: '', user: '' }),
  cgroup: (id) => ({ path: `contract/${id}` }),
  k8s: (id) => ({ kubeconfig: kube.kubeconfig, context: '', namespace: 'default', manifest: deployment(id), waitReady: true }),
  // A chart made by `helm create`: a ServiceAccount, a Service and a Deployment.
  helm: (id) => ({ kubeconfig: kube.kubeconfig, context: '', namespace: 'default', chart, release: id, values: '', waitReady: true }),
};

/** The FAKE apiserver the k8s driver's contract runs on. */
let kube: FakeKube;
const tools = kubeTools();
let chart: string;
before(async () => {
  kube = await startFakeKube({ phaseMs: 20 });
  execFileSync(tools.helm, ['create', 'web'], { cwd: dataDir, stdio: 'ignore' });
  chart = path.join(dataDir, 'web');
});

function deployment(name: string): string {
  return JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'main', image: 'busybox:1.36', command: ['sleep', '600'] }] } } },
  });
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-contract-'));
const config = loadConfig({ AGENT_HELM_BIN: tools.helm, AGENT_DATA_DIR: dataDir, AGENT_CGROUP_PARENT: `agent-contract-${randomBytes(4).toString('hex')}`, AGENT_HOST_ID: 'contract', AGENT_STOP_GRACE_MS: '1000', AGENT_LOG_LEVEL: 'error' });
const host = createHostDrivers(config);

after(async () => {
  for (const d of host.objects.values()) await d.close();
  await kube?.close();
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

function specFor(field: WorkloadField, id: string, resources: Resources = NO_LIMITS): WorkloadSpec {
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

/**
 * Per dimension: the cgroup file (v1 controller and file, v2 file) and, for a
 * value, the lines it must hold (each line's words must all be on one line of
 * the file), for the contract's checks.
 */
const FILES: Readonly<Record<Limit, { ctrl: string; v1: string; v2: string; text: (v: never, all: Resources, version: CgroupVersion) => string[] }>> = {
  cpus: { ctrl: 'cpu', v1: 'cpu.cfs_quota_us', v2: 'cpu.max', text: (v: number) => [String(v * 100_000)] },
  memoryBytes: { ctrl: 'memory', v1: 'memory.limit_in_bytes', v2: 'memory.max', text: (v: number) => [String(v)] },
  pidsLimit: { ctrl: 'pids', v1: 'pids.max', v2: 'pids.max', text: (v: number) => [String(v)] },
  cpusetCpus: { ctrl: 'cpuset', v1: 'cpuset.cpus', v2: 'cpuset.cpus', text: (v: string) => [v] },
  cpusetMems: { ctrl: 'cpuset', v1: 'cpuset.mems', v2: 'cpuset.mems', text: (v: string) => [v] },
  cpuWeight: { ctrl: 'cpu', v1: 'cpu.shares', v2: 'cpu.weight', text: (v: number) => [String(Math.round(v * 10.24))] },
  memoryHighBytes: { ctrl: 'memory', v1: 'memory.soft_limit_in_bytes', v2: 'memory.high', text: (v: number) => [String(v)] },
  // v1 memsw is the total; v2 memory.swap.max the swap alone.
  memorySwapBytes: { ctrl: 'memory', v1: 'memory.memsw.limit_in_bytes', v2: 'memory.swap.max', text: (v: number, all, version) => [String(version === 'v2' ? v - all.memoryBytes : v)] },
  ioReadBps: { ctrl: 'blkio', v1: 'blkio.throttle.read_bps_device', v2: 'io.max', text: (v: Record<string, number>, _, version) => Object.entries(v).map(([dev, n]) => (version === 'v2' ? `${dev} rbps=${n}` : `${dev} ${n}`)) },
  ioWriteBps: { ctrl: 'blkio', v1: 'blkio.throttle.write_bps_device', v2: 'io.max', text: (v: Record<string, number>, _, version) => Object.entries(v).map(([dev, n]) => (version === 'v2' ? `${dev} wbps=${n}` : `${dev} ${n}`)) },
};

/** The limits a driver can set, from wanted; none for the others. */
function settable(caps: { limits: Readonly<Record<Limit, boolean>> }, wanted: Partial<Resources>): Resources {
  return limits(Object.fromEntries(Object.entries(wanted).filter(([k]) => caps.limits[k as Limit])));
}

/** The host's whole cpuset (v1 root; v2 effective): a cpuset equal to it restricts nothing and reads back as none. */
const hostSet = (file: string): string => {
  for (const p of [`/sys/fs/cgroup/cpuset/${file}`, `/sys/fs/cgroup/${file}.effective`]) if (fs.existsSync(p)) return fs.readFileSync(p, 'utf8').trim();
  return '';
};
const readBack = (r: Resources): Resources => ({ ...r, cpusetCpus: r.cpusetCpus === hostSet('cpuset.cpus') ? '' : r.cpusetCpus, cpusetMems: r.cpusetMems === hostSet('cpuset.mems') ? '' : r.cpusetMems });

const lastCpu = String(os.cpus().length - 1);
// Two of this host's block devices for the per-device limits (one when it has only one).
const [disk = '', disk2 = disk] = blockDevices();

for (const row of KINDS) {
  const driver = host.objects.get(row.driver)!;
  const caps = row.capabilities;
  const made = settable(caps, {
    cpus: 0.5,
    memoryBytes: 64 * MiB,
    pidsLimit: 32,
    cpusetCpus: '0',
    cpusetMems: '0',
    cpuWeight: 300,
    memoryHighBytes: 48 * MiB,
    memorySwapBytes: 96 * MiB,
    ioReadBps: { [disk]: 1 * MiB, [disk2]: 2 * MiB },
    ioWriteBps: { [disk]: 4 * MiB },
  });
  // A driver's change names whole maps: disk2's read limit goes, disk's changes; the write map is not named and stays.
  const changed = settable(caps, { memoryBytes: 96 * MiB, pidsLimit: 64, cpusetCpus: lastCpu, cpuWeight: 50, memoryHighBytes: 32 * MiB, ioReadBps: { [disk]: 3 * MiB } });
  // Memory alone moved by 32 MiB: the swap total moves with it (the 32 MiB swap allowance stays).
  const followed = caps.limits.memorySwapBytes ? { memorySwapBytes: 128 * MiB } : {};

  /** Every dimension set in want is in its cgroup file as the kernel shows it. */
  const holds = (rt: Runtime, want: Resources): void => {
    if (!caps.cgroup) return;
    for (const d of DIMENSIONS) {
      if (isNone(d, want[d.key])) continue;
      const f = FILES[d.key];
      const lines = file(rt, f.ctrl, f.v1, f.v2).split('\n').map((l) => l.trim().split(/\s+/));
      for (const text of f.text(want[d.key] as never, want, rt.cgroup.version)) {
        assert.ok(lines.some((words) => text.split(' ').every((w) => words.includes(w))), `${d.field}: "${text}" in ${f.v1}/${f.v2}: ${JSON.stringify(lines)}`);
      }
    }
  };

  describe(`${driver.name} driver contract (${v1.Kind[row.kind]})${row.driver === Driver.K8s || row.driver === Driver.Helm ? ' on the FAKE apiserver' : ''}`, () => {
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

    it('creates with every dimension it can set, read back from the object and held by the cgroup files', async () => {
      rt = await driver.create(specFor(row.field, id, made));
      assert.equal(rt.running, true);
      assert.deepEqual(rt.applied, readBack(made));
      holds(rt, made);
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

    it('updates dimensions and reads them back from the object, keeping what it does not name', async () => {
      const change = Object.fromEntries(DIMENSIONS.filter((d) => !isNone(d, changed[d.key])).map((d) => [d.key, changed[d.key]]));
      const want = { ...made, ...change, ...followed };
      // The spec after the update goes along, for drivers that apply a whole spec (k8s).
      rt = await driver.update(rt, change, specFor(row.field, id, want));
      assert.deepEqual(rt.applied, readBack(want));
      assert.equal(rt.applied.cpus, made.cpus, 'an update keeps what it does not name');
      holds(rt, want);
    });

    it('removes a limit by setting it to none, where the driver can on a live object', { skip: !caps.limits.cpuWeight || !caps.limits.memoryHighBytes }, async () => {
      rt = await driver.update(rt, { cpuWeight: 0, memoryHighBytes: 0 });
      assert.equal(rt.applied.cpuWeight, 0);
      assert.equal(rt.applied.memoryHighBytes, 0);
      if (caps.cgroup) assert.equal(file(rt, 'cpu', 'cpu.shares', 'cpu.weight'), rt.cgroup.version === 'v2' ? '100' : '1024', 'back to the default weight');
    });

    it('updates the swap total alone, and a memory lowered alone keeps the allowance', { skip: !caps.limits.memorySwapBytes }, async () => {
      rt = await driver.update(rt, { memorySwapBytes: 160 * MiB });
      assert.equal(rt.applied.memorySwapBytes, 160 * MiB);
      assert.equal(rt.applied.memoryBytes, 96 * MiB);
      rt = await driver.update(rt, { memoryBytes: 80 * MiB });
      assert.deepEqual([rt.applied.memoryBytes, rt.applied.memorySwapBytes], [80 * MiB, 144 * MiB]);
      holds(rt, rt.applied);
    });

    it('removes per-device limits (the maps empty) and the swap total; docker cannot drop a container\'s swap total', { skip: !caps.limits.ioReadBps || !caps.limits.memorySwapBytes }, async () => {
      rt = await driver.update(rt, { ioReadBps: {}, ioWriteBps: {} });
      assert.deepEqual([rt.applied.ioReadBps, rt.applied.ioWriteBps], [{}, {}]);
      if (caps.cgroup && rt.cgroup.version === 'v1') {
        assert.equal(file(rt, 'blkio', 'blkio.throttle.read_bps_device', 'io.max'), '');
        assert.equal(file(rt, 'blkio', 'blkio.throttle.write_bps_device', 'io.max'), '');
      }
      if (driver.name === Driver.Docker) {
        // Docker's MemorySwap -1 is unlimited swap, not "no limit of ours": refused, and nothing changed.
        await assert.rejects(driver.update(rt, { memorySwapBytes: 0 }), (e: unknown) => e instanceof FailedPreconditionError && /^resources\.memory_swap_bytes: docker cannot remove/.test(e.message));
        assert.equal((await driver.inspect(rt)).applied.memorySwapBytes, 144 * MiB);
        return;
      }
      rt = await driver.update(rt, { memorySwapBytes: 0 });
      assert.equal(rt.applied.memorySwapBytes, 0);
      assert.equal(rt.applied.memoryBytes, 80 * MiB, 'memory stays');
      if (caps.cgroup) assert.match(file(rt, 'memory', 'memory.memsw.limit_in_bytes', 'memory.swap.max'), /^(max|\d{19})$/, 'no swap limit');
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
      assert.deepEqual(found.applied, rt.applied, 'limits read back from the object itself');
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
