// The collector against real processes and cgroups: figures match the cgroup
// files, CPU% is right for a busy loop, and a vanished cgroup yields absent
// figures, not stale ones.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Module, type DriverName } from '@agent/option';
import { connect, Logger } from '@agent/grpc-kit';
import { CgroupDriver, CgroupFs, limits, NO_LIMITS, ProcessDriver, type Driver, type Runtime } from '@agent/drivers';
import { internalv1, v1 } from '@agent/proto';
import { toRuntimeInfo } from '@agent/kinds';
import { CollectorService, driverSamplers } from './collector';

const parent = `agent-collector-test-${randomBytes(3).toString('hex')}`;
const cgroups = new CgroupDriver(new CgroupFs(parent));
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'collector-test-'));
const procs = new ProcessDriver(cgroups, { logDir: dataDir, defaultCwd: '/', stopGraceMs: 500, defaultUser: 'nobody', allow: [] });
// Never called: nothing here forwards to a reporter.
const reporter = connect(internalv1.ReporterClient, '127.0.0.1:9');
const collector = new CollectorService(driverSamplers({ objects: new Map<DriverName, Driver>([[procs.name, procs], [cgroups.name, cgroups]]) }), reporter, { hostId: 'test', baseIntervalMs: 3_600_000 }, new Logger(Module.Collector, 'error'));

const target = (objectId: string, rt: Runtime): internalv1.CollectTarget => ({
  objectId,
  kind: v1.Kind.KIND_PROCESS,
  runtime: toRuntimeInfo(rt),
  host: false,
  name: objectId,
  image: '',
  origin: v1.Origin.ORIGIN_CREATED,
});

function file(rt: Runtime, ctrl: string, v1name: string, v2name: string): string {
  const dir = rt.cgroup.version === 'v2' ? rt.cgroup.paths.unified! : rt.cgroup.paths[ctrl]!;
  return fs.readFileSync(path.join(dir, rt.cgroup.version === 'v2' ? v2name : v1name), 'utf8').trim();
}
const cpuNs = (rt: Runtime): number => {
  const t = file(rt, 'cpuacct', 'cpuacct.usage', 'cpu.stat');
  return rt.cgroup.version === 'v2' ? Number(/usage_usec (\d+)/.exec(t)![1]) * 1000 : Number(t);
};

describe('collector on real cgroups', () => {
  let half: Runtime;
  let full: Runtime;

  before(async () => {
    const busy = { command: ['sh', '-c', 'while :; do :; done'], env: [], cwd: '', user: '' };
    half = await procs.create({ objectId: 'half', name: 'half', labels: {}, resources: limits({ cpus: 0.5, memoryBytes: 64 << 20, pidsLimit: 8 }), workload: busy });
    full = await procs.create({ objectId: 'full', name: 'full', labels: {}, resources: NO_LIMITS, workload: busy });
    collector.createTask(target('half', half));
    collector.createTask(target('full', full));
  });

  after(async () => {
    await collector.close();
    reporter.close();
    await procs.remove(half).catch(() => undefined);
    await procs.remove(full).catch(() => undefined);
    for (const dir of Object.values(cgroups.fs.refFor('').paths)) fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('reads figures that match the cgroup files', () => {
    const cpuBefore = cpuNs(half);
    const r = collector.collectOnce('half');
    const cpuAfter = cpuNs(half);
    assert.ok(r.cpuUsageNs! >= cpuBefore && r.cpuUsageNs! <= cpuAfter, `${cpuBefore} <= ${r.cpuUsageNs} <= ${cpuAfter}`);
    assert.equal(r.memoryLimitBytes, Number(file(half, 'memory', 'memory.limit_in_bytes', 'memory.max')));
    assert.equal(r.memoryLimitBytes, 64 << 20);
    assert.equal(r.pids, Number(file(half, 'pids', 'pids.current', 'pids.current')));
    assert.equal(r.memoryUsageBytes, Number(file(half, 'memory', 'memory.usage_in_bytes', 'memory.current')));
    assert.equal(r.netRxBytes, undefined, 'a process in the agent network namespace has no network figures of its own');
    const u = collector.collectOnce('full');
    assert.equal(u.memoryLimitBytes, undefined, 'no limit: no figure');
  });

  it('computes CPU% from its own previous sample: ~50% under a 0.5-cpu limit, ~100% without', async () => {
    collector.collectOnce('half');
    collector.collectOnce('full');
    await new Promise((r) => setTimeout(r, 2_000));
    const h = collector.collectOnce('half');
    const f = collector.collectOnce('full');
    assert.ok(h.cpuPercent! > 40 && h.cpuPercent! < 60, `limited busy loop at ${h.cpuPercent}%`);
    assert.ok(f.cpuPercent! > 70 && f.cpuPercent! < 115, `unlimited busy loop at ${f.cpuPercent}%`);
  });

  it('reports CPU throttling as the kernel counts it: the limited loop is throttled, the unlimited one never', () => {
    const h = collector.collectOnce('half');
    const f = collector.collectOnce('full');
    const stat = file(half, 'cpu', 'cpu.stat', 'cpu.stat');
    const throttled = Number(/^nr_throttled (\d+)$/m.exec(stat)?.[1]);
    assert.ok(h.cpuThrottledPeriods! > 0 && h.cpuThrottledPeriods! <= throttled, `${h.cpuThrottledPeriods} throttled periods (file: ${throttled})`);
    assert.ok(h.cpuThrottledNs! > 0, `${h.cpuThrottledNs} ns throttled`);
    assert.equal(f.cpuThrottledPeriods, 0);
    // v1 has no memory.high events to count: unset, never invented.
    if (half.cgroup.version === 'v1') assert.equal(h.memoryHighEvents, undefined);
  });

  it('the first sample has no CPU%: there is no previous sample yet', () => {
    const rt = half;
    collector.createTask({ ...target('again', rt) });
    const first = collector.getTask('again').last!;
    assert.equal(first.cpuPercent, undefined);
    collector.deleteTask('again');
  });

  it('sees a limit changed under it at once (files are re-read, not cached)', async () => {
    await procs.update(half, { memoryBytes: 96 << 20 });
    assert.equal(collector.collectOnce('half').memoryLimitBytes, 96 << 20);
  });

  it('a cgroup that goes away gives absent figures, and one made again is read afresh', async () => {
    const ref = cgroups.fs.create('vanishing');
    cgroups.fs.applyLimits(ref, { memoryBytes: 32 << 20 });
    const rt: Runtime = { runtimeId: 'v', pid: 0, cgroup: ref, applied: NO_LIMITS, running: true };
    collector.createTask({ ...target('vanishing', rt), kind: v1.Kind.KIND_CGROUP });
    assert.equal(collector.collectOnce('vanishing').memoryLimitBytes, 32 << 20);
    cgroups.fs.remove(ref);
    const gone = collector.collectOnce('vanishing');
    assert.equal(gone.memoryLimitBytes, undefined);
    assert.equal(gone.cpuUsageNs, undefined);
    cgroups.fs.create('vanishing');
    cgroups.fs.applyLimits(ref, { memoryBytes: 48 << 20 });
    assert.equal(collector.collectOnce('vanishing').memoryLimitBytes, 48 << 20);
    collector.deleteTask('vanishing');
    cgroups.fs.remove(ref);
  });
});
