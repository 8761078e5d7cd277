// The runtime watcher: containers the agent did not create are discovered,
// none twice, including those started while the agent starts; their stop and
// removal show at once.
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { api, BUSYBOX, sh, startAgent, waitFor, type Agent } from '@agent/testkit';

interface Obj {
  objectId: string;
  state: string;
  runtimeId: string;
  origin?: string;
  spec: { name: string; labels?: Record<string, string> };
}

describe('discovered containers', () => {
  const tag = `disc-${randomBytes(3).toString('hex')}`;
  let agent: Agent | undefined;
  const run = (i: number): Promise<string> => sh('docker', ['run', '-d', '--init', '--label', `e2e.discover=${tag}`, '--name', `${tag}-${i}`, BUSYBOX, 'sleep', '600']);

  after(async () => {
    await agent?.stop();
    const left = await sh('docker', ['ps', '-aq', '--filter', `label=e2e.discover=${tag}`]);
    if (left) await sh('docker', ['rm', '-f', ...left.split('\n')]);
  });

  it('20 containers started outside the agent, some while it starts: all discovered, none twice', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await run(i));
    const starting = startAgent({ AGENT_DISCOVER: `e2e.discover=${tag}` });
    for (let i = 10; i < 20; i++) ids.push(await run(i)); // races the agent's startup
    agent = await starting;
    const a = agent;
    const objs = await waitFor('20 discovered', async () => {
      const list = (await api(a, 'List', { labels: { 'e2e.discover': tag } })).body.objects as Obj[] | undefined;
      return list && list.length >= 20 ? list : undefined;
    }, 10_000, 100);
    assert.equal(objs.length, 20, 'no duplicates');
    assert.deepEqual(objs.map((o) => o.runtimeId).sort(), [...ids].sort());
    for (const o of objs) {
      assert.equal(o.origin, 'ORIGIN_DISCOVERED');
      assert.equal(o.state, 'STATE_RUNNING');
    }
    // An unlabelled container is not adopted; the agent's own are never adopted as discovered.
    const other = await sh('docker', ['run', '-d', '--init', BUSYBOX, 'sleep', '600']);
    const own = await api(a, 'Create', { spec: { name: 'own', kind: 'KIND_CONTAINER', labels: { 'e2e.discover': tag }, container: { image: BUSYBOX, command: ['sleep', '600'] } }, wait: true });
    await new Promise((r) => setTimeout(r, 500));
    const all = (await api(a, 'List', {})).body.objects as Obj[];
    assert.equal(all.filter((o) => o.runtimeId === other).length, 0);
    assert.equal(all.filter((o) => o.origin === 'ORIGIN_DISCOVERED').length, 20);
    assert.equal(all.length, 21);
    await sh('docker', ['rm', '-f', other]);
    await api(a, 'Delete', { object_id: own.body.objectId, wait: true });

    // A discovered container can be pushed like any object.
    const first = objs[0]!;
    const once = await api(a, 'PushOnce', { object_id: first.objectId });
    assert.ok(Number(once.body.memoryUsageBytes) > 0, JSON.stringify(once));

    // Stop and removal outside the agent update the state within 1 s.
    await sh('docker', ['stop', '-t', '1', first.runtimeId]);
    await waitFor('STOPPED', async () => ((await api(a, 'Get', { object_id: first.objectId })).body.state === 'STATE_STOPPED' ? true : undefined), 1_000, 50);
    await sh('docker', ['rm', '-f', first.runtimeId]);
    await waitFor('DELETED', async () => ((await api(a, 'Get', { object_id: first.objectId })).body.state === 'STATE_DELETED' ? true : undefined), 1_000, 50);
    const second = objs[1]!;
    await sh('docker', ['rm', '-f', second.runtimeId]);
    await waitFor('DELETED without a stop first', async () => ((await api(a, 'Get', { object_id: second.objectId })).body.state === 'STATE_DELETED' ? true : undefined), 1_000, 50);
  });

  it('after a restart the same containers are the same objects', async () => {
    const a = agent!;
    const before = ((await api(a, 'List', { labels: { 'e2e.discover': tag } })).body.objects as Obj[]).map((o) => o.objectId).sort();
    await a.stop('SIGKILL');
    agent = await startAgent({ AGENT_DISCOVER: `e2e.discover=${tag}` }, a);
    const b = agent;
    const after = await waitFor('18 objects again', async () => {
      const list = (await api(b, 'List', { labels: { 'e2e.discover': tag } })).body.objects as Obj[] | undefined;
      return list && list.length === 18 && list.every((o) => o.state === 'STATE_RUNNING') ? list : undefined;
    }, 10_000, 100);
    assert.deepEqual(after.map((o) => o.objectId).sort(), before);
  });

  it('discovered containers are read-only unless AGENT_DISCOVER_MANAGE=true', async () => {
    const a = agent!;
    const objs = (await api(a, 'List', { labels: { 'e2e.discover': tag } })).body.objects as Obj[];
    const o = objs[0]!;
    const upd = await api(a, 'Update', { object_id: o.objectId, resources: { memory_bytes: 64 * 1024 * 1024 } });
    assert.equal(upd.error?.code, 'failed_precondition', JSON.stringify(upd));
    assert.match(upd.error?.message ?? '', /not managed by this agent/);
    const del = await api(a, 'Delete', { object_id: o.objectId, wait: true });
    assert.equal(del.error?.code, 'failed_precondition', JSON.stringify(del));
    assert.equal(await sh('docker', ['inspect', '-f', '{{.State.Running}}', o.runtimeId]), 'true', 'the container is untouched');

    await a.stop();
    agent = await startAgent({ AGENT_DISCOVER: `e2e.discover=${tag}`, AGENT_DISCOVER_MANAGE: 'true' }, a);
    const b = agent;
    await waitFor('running again', async () => ((await api(b, 'Get', { object_id: o.objectId })).body?.state === 'STATE_RUNNING' ? true : undefined), 10_000, 100);
    const ok = await api(b, 'Delete', { object_id: o.objectId, wait: true });
    assert.equal(ok.body?.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(ok));
    await assert.rejects(sh('docker', ['inspect', o.runtimeId]), 'the container is gone');
  });
});
