// A container's limit change: the cgroup is the change (the Update answers
// once the kernel holds it), Docker's own record (HostConfig: what inspect
// shows and a restart re-applies) follows off the answer path. Real Docker
// throughout; Docker's refusal is a real one (NanoCpus over a quota set by
// `docker update`), and Docker not answering is its socket going away.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { api, BUSYBOX, cpuQuotaOf, memoryLimitFile, sh, startAgent, startDockerProxy, waitFor, type Agent } from '@agent/testkit';

const MiB = 1024 * 1024;

interface Obj {
  objectId: string;
  runtimeId: string;
  pid: number;
  state: string;
  lastError?: string;
  appliedResources?: { memoryBytes?: string; cpus?: number };
}

const hostConfig = (id: string, field: string): Promise<string> => sh('docker', ['inspect', '-f', `{{.HostConfig.${field}}}`, id]);
const limitOf = (pid: number): number => Number(fs.readFileSync(memoryLimitFile(pid), 'utf8').trim());

describe("Docker's record follows the cgroup", () => {
  let agent: Agent;
  let proxy: Awaited<ReturnType<typeof startDockerProxy>>;
  before(async () => {
    // The agent talks to Docker through a socket the test can take away (Docker not answering).
    proxy = await startDockerProxy();
    agent = await startAgent({ AGENT_DOCKER_SOCKET: proxy.path });
  });
  after(async () => {
    await agent?.stop();
    await proxy?.stop();
    const left = await sh('docker', ['ps', '-aq', '--filter', `label=io.agent.host-id=${agent.hostId}`]).catch(() => '');
    if (left) await sh('docker', ['rm', '-f', ...left.split('\n')]);
  });

  const create = async (name: string, resources: Record<string, unknown>): Promise<Obj> => {
    const made = await api(agent, 'Create', { spec: { name, kind: 'KIND_CONTAINER', resources, container: { image: BUSYBOX, command: ['sleep', '600'] } }, wait: true });
    assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made));
    return get(made.body.objectId as string);
  };
  const get = async (id: string): Promise<Obj> => (await api(agent, 'Get', { object_id: id })).body as Obj;

  it('an Update answers once the cgroup holds the limit; docker inspect shows it within a second', async () => {
    const obj = await create('rec-catch-up', { memory_bytes: String(64 * MiB) });
    const t0 = Date.now();
    const upd = await api(agent, 'Update', { object_id: obj.objectId, resources: { memory_bytes: String(96 * MiB) }, wait: true });
    assert.equal(upd.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(upd));
    assert.equal(limitOf(obj.pid), 96 * MiB, 'the kernel holds it when the call answers');
    await waitFor('docker inspect shows 96 MiB', async () => (await hostConfig(obj.runtimeId, 'Memory')) === String(96 * MiB) || undefined, 1_000, 5);
    assert.ok(Date.now() - t0 < 1_000, `Docker's record caught up in ${Date.now() - t0} ms`);
    assert.equal((await get(obj.objectId)).lastError ?? '', '');
  });

  it('a burst of updates: the cgroup and Docker both end at the last one', async () => {
    const obj = await create('rec-burst', { memory_bytes: String(64 * MiB) });
    // Published one after the other without waiting for them to run: they queue on the object and run back to back.
    for (let i = 0; i < 10; i++) {
      const ack = await api(agent, 'Update', { object_id: obj.objectId, resources: { memory_bytes: String((70 + i) * MiB) }, wait: i === 9 });
      assert.ok(ack.ok, JSON.stringify(ack.error));
    }
    assert.equal((await get(obj.objectId)).appliedResources?.memoryBytes, String(79 * MiB));
    assert.equal(limitOf(obj.pid), 79 * MiB);
    await waitFor('docker inspect shows the last value', async () => (await hostConfig(obj.runtimeId, 'Memory')) === String(79 * MiB) || undefined, 1_000, 5);
  });

  it('a container restarted right after an update keeps the new limit', async () => {
    const obj = await create('rec-restart', { memory_bytes: String(64 * MiB) });
    const upd = await api(agent, 'Update', { object_id: obj.objectId, resources: { memory_bytes: String(112 * MiB) }, wait: true });
    assert.equal(upd.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(upd));
    await sh('docker', ['restart', '-t', '0', obj.runtimeId]);
    const pid = Number(await sh('docker', ['inspect', '-f', '{{.State.Pid}}', obj.runtimeId]));
    assert.notEqual(pid, obj.pid, 'a new process');
    // Had the restart beaten the record (within the same few ms), Docker applies the update to the running container when it arrives.
    await waitFor('the restarted container has 112 MiB', () => limitOf(pid) === 112 * MiB || undefined, 1_000, 5);
    assert.equal(await hostConfig(obj.runtimeId, 'Memory'), String(112 * MiB));
  });

  it("Docker refusing the change takes the cgroup back; the object's last_error says why", async () => {
    const obj = await create('rec-refused', { memory_bytes: String(64 * MiB) });
    // Someone set a CPU quota through Docker: Docker now refuses NanoCpus for this container.
    await sh('docker', ['update', '--cpu-period', '100000', '--cpu-quota', '50000', obj.runtimeId]);
    const upd = await api(agent, 'Update', { object_id: obj.objectId, resources: { cpus: 0.25 }, wait: true });
    assert.equal(upd.body.status, 'EVENT_STATUS_SUCCEEDED', 'the cgroup took it: the call answers');
    const after = await waitFor('last_error', async () => {
      const o = await get(obj.objectId);
      return o.lastError ? o : undefined;
    }, 2_000);
    assert.match(after.lastError!, /^docker refused the limit change: .*Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set/);
    assert.equal(cpuQuotaOf(obj.pid), 50_000, 'the cgroup went back to what Docker holds');
    assert.equal(after.appliedResources?.cpus, 0.5, 'the object shows the limit in effect');
    assert.equal(after.state, 'STATE_RUNNING');
    assert.equal(await hostConfig(obj.runtimeId, 'NanoCpus'), '0');
    // Another limit still goes through, and clears the error.
    const ok = await api(agent, 'Update', { object_id: obj.objectId, resources: { memory_bytes: String(80 * MiB) }, wait: true });
    assert.equal(ok.body.status, 'EVENT_STATUS_SUCCEEDED');
    assert.equal((await get(obj.objectId)).lastError ?? '', '');
    await waitFor('docker inspect shows 80 MiB', async () => (await hostConfig(obj.runtimeId, 'Memory')) === String(80 * MiB) || undefined, 1_000, 5);
  });

  it('Docker not answering: the cgroup holds the change, the record is sent once Docker answers again', async () => {
    const obj = await create('rec-unreachable', { memory_bytes: String(64 * MiB) });
    await proxy.down();
    try {
      const upd = await api(agent, 'Update', { object_id: obj.objectId, resources: { memory_bytes: String(100 * MiB) }, wait: true });
      assert.equal(upd.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(upd));
      assert.equal(limitOf(obj.pid), 100 * MiB);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await hostConfig(obj.runtimeId, 'Memory'), String(64 * MiB), 'Docker has not heard of it yet');
    } finally {
      await proxy.up();
    }
    await waitFor('docker inspect shows 100 MiB once Docker answers', async () => (await hostConfig(obj.runtimeId, 'Memory')) === String(100 * MiB) || undefined, 10_000, 20);
    const o = await get(obj.objectId);
    assert.equal(o.lastError ?? '', '', 'not answering is not refusing');
    assert.equal(limitOf(obj.pid), 100 * MiB);
  });

  it("after a SIGKILL before Docker heard of a change, the restarted agent brings Docker's record up to the cgroup", async () => {
    const obj = await create('rec-killed', { memory_bytes: String(64 * MiB) });
    await proxy.down();
    const upd = await api(agent, 'Update', { object_id: obj.objectId, resources: { memory_bytes: String(120 * MiB) }, wait: true });
    assert.equal(upd.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(upd));
    await agent.stop('SIGKILL');
    await proxy.up();
    assert.equal(await hostConfig(obj.runtimeId, 'Memory'), String(64 * MiB), 'the record the kill left behind');
    agent = await startAgent({ AGENT_DOCKER_SOCKET: proxy.path }, agent);
    await waitFor('docker inspect shows 120 MiB', async () => (await hostConfig(obj.runtimeId, 'Memory')) === String(120 * MiB) || undefined, 10_000, 20);
    assert.equal(limitOf(obj.pid), 120 * MiB);
    assert.equal((await get(obj.objectId)).lastError ?? '', '');
  });

  // What a SIGKILL between the cgroup write and the object's record leaves (the record goes a few
  // ms after the answer): the race above, made certain. Nothing of the agent's says 48 MiB: not
  // the object's record, not Docker's; the event, run again, finds the cgroup already there.
  it("a cgroup ahead of the agent's record of the object: the restarted agent brings Docker's record up to the cgroup", async () => {
    const obj = await create('rec-ahead', { memory_bytes: String(64 * MiB) });
    await agent.stop('SIGKILL');
    fs.writeFileSync(memoryLimitFile(obj.pid), String(48 * MiB));
    agent = await startAgent({ AGENT_DOCKER_SOCKET: proxy.path }, agent);
    await waitFor('docker inspect shows 48 MiB', async () => (await hostConfig(obj.runtimeId, 'Memory')) === String(48 * MiB) || undefined, 10_000, 20);
    const o = await get(obj.objectId);
    assert.equal(o.appliedResources?.memoryBytes, String(48 * MiB), 'the object shows the limit in effect');
    assert.equal(o.lastError ?? '', '');
    assert.equal(limitOf(obj.pid), 48 * MiB);
  });
});
