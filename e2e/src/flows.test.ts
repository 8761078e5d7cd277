// The "done means": the whole sequence through buf curl (reflection
// only, no proto files) against the running daemon, on real Docker and real
// processes, with reports arriving at the upstream sink program.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { api, bufCurl, BUSYBOX, isAlive, memoryLimitFile, sh, startAgent, startSink, waitFor, type Agent, type Sink } from './harness';

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
    assert.equal(await sh('docker', ['inspect', '-f', '{{.HostConfig.Memory}}', obj.runtimeId]), String(128 * MiB));
    assert.equal(fs.readFileSync(memoryLimitFile(obj.pid), 'utf8').trim(), String(128 * MiB));
    const after = await api(agent, 'Get', { object_id: id });
    assert.equal(after.body.appliedResources.memoryBytes, String(128 * MiB));

    await pushOffAndCheckQuiet(id);

    const del = await api(agent, 'Delete', { object_id: id, wait: true });
    assert.equal(del.body.state, 'STATE_DELETED');
    assert.equal(await sh('docker', ['ps', '-aq', '--filter', `label=io.agent.object-id=${id}`]), '');
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
