// The "done means": the whole sequence through buf curl (reflection
// only, no proto files) against the running daemon, on real Docker and real
// processes, with reports arriving at the upstream sink program.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { api, bufCurl, BUSYBOX, isAlive, memoryLimitFile, sh, startAgent, startSink, waitFor, type Agent, type Sink } from '@agent/testkit';

const MiB = 1024 * 1024;

describe('end to end through buf curl', () => {
  let sink: Sink;
  let agent: Agent;

  before(async () => {
    sink = await startSink();
    agent = await startAgent({ AGENT_UPSTREAM: sink.address, AGENT_HEARTBEAT_MS: '1000' });
  });
  after(async () => {
    await agent?.stop();
    await sink?.stop();
  });

  it('registers the host with the upstream at startup', async () => {
    const host = await waitFor('host registration', () => sink.lines.find((l) => l.type === 'host'));
    assert.equal(host.host?.hostId, agent.hostId);
  });

  it('serves health and reflection for grpcurl-style clients', async () => {
    const health = await bufCurl(agent.address, 'grpc.health.v1.Health/Check', { service: 'agent.v1.AgentService' });
    assert.deepEqual(health.body, { status: 'SERVING' });
  });

  /** No timer left: the collector (reached over reflection like any service) has no task for the object. */
  async function assertNoCollectTask(objectId: string): Promise<void> {
    const collector = agent.logs.find((l) => l.msg === 'grpc server listening' && l.module === 'collector') as { address?: string } | undefined;
    assert.ok(collector?.address);
    const r = await bufCurl(collector.address, 'agent.internal.v1.Collector/GetTask', { object_id: objectId }, { token: agent.internalToken });
    assert.equal(r.error?.code, 'not_found', JSON.stringify(r));
  }

  async function pushAndCheckReports(objectId: string): Promise<void> {
    const on = await api(agent, 'PushOn', { object_id: objectId, interval_ms: 200, wait: true });
    assert.ok(on.ok, JSON.stringify(on.error));
    assert.equal(on.body.status, 'EVENT_STATUS_SUCCEEDED');
    const got = await waitFor(
      'three reports with memory at the sink',
      () => {
        const mine = sink.lines.filter((l) => l.type === 'report' && l.report?.objectId === objectId && Number(l.report?.memoryUsageBytes) > 0);
        return mine.length >= 3 ? mine : undefined;
      },
      10_000,
    );
    for (const l of got) assert.equal(l.hostId, agent.hostId);
    const obj = await api(agent, 'Get', { object_id: objectId });
    assert.equal(obj.body.pushing, true);
  }

  async function pushOffAndCheckQuiet(objectId: string): Promise<void> {
    const off = await api(agent, 'PushOff', { object_id: objectId, wait: true });
    assert.equal(off.body.status, 'EVENT_STATUS_SUCCEEDED');
    const count = (): number => sink.lines.filter((l) => l.type === 'report' && l.report?.objectId === objectId).length;
    await new Promise((r) => setTimeout(r, 300)); // let an in-flight batch land
    const before = count();
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(count(), before, 'reports kept coming after PushOff');
    assert.equal((await api(agent, 'Get', { object_id: objectId })).body.pushing ?? false, false);
  }

  it('container: create with a memory limit, push, update, push off, delete', async () => {
    const created = await api(agent, 'Create', {
      spec: { name: 'e2e-web', kind: 'KIND_CONTAINER', labels: { app: 'web' }, resources: { memory_bytes: 64 * MiB }, container: { image: BUSYBOX, command: ['sleep', '3600'] } },
      wait: true,
    });
    assert.ok(created.ok, JSON.stringify(created.error));
    const id: string = created.body.objectId;
    assert.equal(created.body.state, 'STATE_RUNNING');

    const obj = await waitFor('RUNNING', async () => {
      const o = await api(agent, 'Get', { object_id: id });
      return o.body.state === 'STATE_RUNNING' ? o.body : undefined;
    });
    assert.match(obj.runtimeId, /^[0-9a-f]{64}$/);
    assert.ok(obj.pid > 0);
    assert.equal(await sh('docker', ['inspect', '-f', '{{.HostConfig.Memory}}', obj.runtimeId]), String(64 * MiB));
    assert.equal(await sh('docker', ['inspect', '-f', '{{index .Config.Labels "io.agent.object-id"}}', obj.runtimeId]), id);

    await pushAndCheckReports(id);

    const upd = await api(agent, 'Update', { object_id: id, resources: { memory_bytes: 128 * MiB }, wait: true });
    assert.equal(upd.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(upd.body));
    // The cgroup is the change (it holds the limit when the call answers); Docker's record follows (docker-record.test.ts).
    assert.equal(fs.readFileSync(memoryLimitFile(obj.pid), 'utf8').trim(), String(128 * MiB));
    await waitFor('docker inspect shows the new limit', async () => (await sh('docker', ['inspect', '-f', '{{.HostConfig.Memory}}', obj.runtimeId])) === String(128 * MiB) || undefined, 2_000);
    const after = await api(agent, 'Get', { object_id: id });
    assert.equal(after.body.appliedResources.memoryBytes, String(128 * MiB));

    await pushOffAndCheckQuiet(id);

    const del = await api(agent, 'Delete', { object_id: id, wait: true });
    assert.equal(del.body.state, 'STATE_DELETED');
    assert.equal(await sh('docker', ['ps', '-aq', '--filter', `label=io.agent.object-id=${id}`]), '');
    await assertNoCollectTask(id);
    assert.equal((await api(agent, 'Get', { object_id: id })).body.state, 'STATE_DELETED');
  });

  it('process: create a sleep with limits, push, update, push off, delete', async () => {
    const created = await api(agent, 'Create', {
      spec: { name: 'e2e-sleep', kind: 'KIND_PROCESS', resources: { memory_bytes: 64 * MiB, cpus: 0.5, pids_limit: 16 }, process: { command: ['sleep', '3600'] } },
      wait: true,
    });
    assert.ok(created.ok, JSON.stringify(created.error));
    assert.equal(created.body.state, 'STATE_RUNNING');
    const id: string = created.body.objectId;
    const obj = (await api(agent, 'Get', { object_id: id })).body;
    const pid: number = obj.pid;
    assert.ok(isAlive(pid));
    assert.equal(fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), 'sleep', 'the launcher must exec the command itself');
    const limitFile = memoryLimitFile(pid);
    assert.ok(limitFile.includes(`${agent.cgroupParent}/proc-${id}`), limitFile);
    assert.equal(fs.readFileSync(limitFile, 'utf8').trim(), String(64 * MiB));
    assert.deepEqual(obj.appliedResources, { cpus: 0.5, memoryBytes: String(64 * MiB), pidsLimit: '16' });

    await pushAndCheckReports(id);

    const upd = await api(agent, 'Update', { object_id: id, resources: { memory_bytes: 96 * MiB }, wait: true });
    assert.equal(upd.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(upd.body));
    assert.equal(fs.readFileSync(limitFile, 'utf8').trim(), String(96 * MiB));

    await pushOffAndCheckQuiet(id);

    const del = await api(agent, 'Delete', { object_id: id, wait: true });
    assert.equal(del.body.state, 'STATE_DELETED');
    assert.equal(isAlive(pid), false, 'process survived delete');
    assert.equal(fs.existsSync(path.dirname(limitFile)), false, 'cgroup survived delete');
    await assertNoCollectTask(id);
  });

  it('cgroup: create below the agent root with limits, then delete removes it', async () => {
    const created = await api(agent, 'Create', {
      spec: { name: 'e2e-group', kind: 'KIND_CGROUP', resources: { memory_bytes: 32 * MiB, pids_limit: 8 }, cgroup: { path: 'tenants/a' } },
      wait: true,
    });
    assert.equal(created.body.state, 'STATE_RUNNING', JSON.stringify(created));
    const id: string = created.body.objectId;
    const obj = (await api(agent, 'Get', { object_id: id })).body;
    assert.equal(obj.runtimeId, `${agent.cgroupParent}/tenants/a`);
    const dir = fs.existsSync('/sys/fs/cgroup/memory') ? `/sys/fs/cgroup/memory/${agent.cgroupParent}/tenants/a` : `/sys/fs/cgroup/${agent.cgroupParent}/tenants/a`;
    const file = fs.existsSync('/sys/fs/cgroup/memory') ? 'memory.limit_in_bytes' : 'memory.max';
    assert.equal(fs.readFileSync(path.join(dir, file), 'utf8').trim(), String(32 * MiB));
    const once = await api(agent, 'PushOnce', { object_id: id });
    assert.equal(once.body.memoryLimitBytes, String(32 * MiB));
    assert.equal(once.body.netRxBytes, undefined, 'a bare cgroup has no network figures of its own');
    const del = await api(agent, 'Delete', { object_id: id, wait: true });
    assert.equal(del.body.state, 'STATE_DELETED');
    assert.equal(fs.existsSync(dir), false);
  });

  it('PushOnce returns a fresh report and hands it to the sinks and the JSONL file', async () => {
    const created = await api(agent, 'Create', {
      spec: { name: 'e2e-once', kind: 'KIND_PROCESS', process: { command: ['sleep', '3600'] } },
      wait: true,
    });
    const id: string = created.body.objectId;
    const once = await api(agent, 'PushOnce', { object_id: id });
    assert.equal(once.body.objectId, id);
    assert.ok(Number(once.body.memoryUsageBytes) >= 0);
    assert.equal(once.body.hostId, agent.hostId);
    await waitFor('PushOnce report at the sink', () => sink.lines.find((l) => l.report?.objectId === id && l.report?.timestamp === once.body.timestamp));
    const lines = fs.readFileSync(path.join(agent.dataDir, 'reports.jsonl'), 'utf8').trim().split('\n');
    assert.ok(lines.some((l) => (JSON.parse(l) as { objectId: string }).objectId === id), 'report missing from the JSONL file');
    const del = await api(agent, 'Delete', { object_id: id, wait: true });
    assert.equal(del.body.state, 'STATE_DELETED');
  });

  it('sends a heartbeat: host reports reach the upstream', async () => {
    const hb = await waitFor('heartbeat', () => sink.lines.find((l) => l.report?.objectId === 'host'), 5_000, 100);
    assert.ok(Number(hb.report?.memoryLimitBytes) > 0);
  });
});

describe('events of one object run in order; objects run concurrently', () => {
  let agent: Agent;
  before(async () => (agent = await startAgent()));
  after(async () => agent?.stop());

  it('a burst of events without wait lands in publish order', async () => {
    const made = await api(agent, 'Create', { spec: { name: 'burst', kind: 'KIND_PROCESS', resources: { memory_bytes: 64 * MiB }, process: { command: ['sleep', '600'] } } });
    const id: string = made.body.objectId;
    assert.equal(made.body.state, 'STATE_PENDING');
    const sizes = [70, 80, 90, 100, 110].map((m) => m * MiB);
    const acks = [];
    for (const m of sizes) acks.push(await api(agent, 'Update', { object_id: id, resources: { memory_bytes: m } }));
    acks.push(await api(agent, 'PushOn', { object_id: id, interval_ms: 1000 }));
    acks.push(await api(agent, 'PushOff', { object_id: id }));
    const last = acks.at(-1)!.body.eventId as string;
    await waitFor('last event done', async () => ((await api(agent, 'GetEvent', { event_id: last })).body.status === 'EVENT_STATUS_SUCCEEDED' ? true : undefined));
    const events = await Promise.all([made, ...acks].map(async (a) => (await api(agent, 'GetEvent', { event_id: a.body.eventId })).body));
    for (const e of events) assert.equal(e.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(e));
    for (let i = 1; i < events.length; i++) assert.ok(Date.parse(events[i].finishedAt) >= Date.parse(events[i - 1].finishedAt), 'finished out of order');
    const obj = (await api(agent, 'Get', { object_id: id })).body;
    assert.equal(obj.appliedResources.memoryBytes, String(110 * MiB));
    assert.equal(fs.readFileSync(memoryLimitFile(obj.pid), 'utf8').trim(), String(110 * MiB));
    await api(agent, 'Delete', { object_id: id, wait: true });
  });

  it('a slow object does not hold up another', async () => {
    // A container create (~0.3 s) published first, then a process create: the process is not queued behind it.
    const c = await api(agent, 'Create', { spec: { name: 'slow', kind: 'KIND_CONTAINER', container: { image: BUSYBOX, command: ['sleep', '600'] } } });
    const p = await api(agent, 'Create', { spec: { name: 'fast', kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] } } });
    const done = async (id: string): Promise<number> =>
      waitFor('event done', async () => {
        const e = (await api(agent, 'GetEvent', { event_id: id })).body;
        return e.status === 'EVENT_STATUS_SUCCEEDED' ? Date.parse(e.finishedAt) : undefined;
      });
    const [tc, tp] = await Promise.all([done(c.body.eventId), done(p.body.eventId)]);
    assert.ok(tp <= tc, 'the process create waited for the container create');
    await api(agent, 'Delete', { object_id: c.body.objectId, wait: true });
    await api(agent, 'Delete', { object_id: p.body.objectId, wait: true });
  });
});
