// The five services as five processes, wired by address as in compose.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { NotFoundError } from '@agent/grpc-kit';
import { v1 } from '@agent/proto';
import { api, apiClient, bufCurl, ROOT, startSeparateAgent, waitFor, type Api } from '@agent/testkit';

describe('five services as separate processes', () => {
  let agent: Awaited<ReturnType<typeof startSeparateAgent>>;

  before(async () => {
    agent = await startSeparateAgent({ AGENT_HEARTBEAT_MS: '500', AGENT_CLEANUP_MS: '1000' });
  });
  after(async () => agent?.stop());

  it('creates, reports on and deletes a process across the five', async () => {
    const ack = await api(agent, 'Create', { spec: { name: 'sep', kind: 'KIND_PROCESS', resources: { memory_bytes: 32 << 20 }, process: { command: ['sleep', '60'] } }, wait: true });
    assert.equal(ack.body.state, 'STATE_RUNNING', JSON.stringify(ack));
    const once = await api(agent, 'PushOnce', { object_id: ack.body.objectId });
    assert.equal(once.body.memoryLimitBytes, String(32 << 20));
    const del = await api(agent, 'Delete', { object_id: ack.body.objectId, wait: true });
    assert.equal(del.body.state, 'STATE_DELETED');
  });

  it('a collector or reporter that restarts is given its state again: pushing goes on', async () => {
    const ack = await api(agent, 'Create', { spec: { name: 'sep-push', kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] } }, wait: true });
    const id: string = ack.body.objectId;
    await api(agent, 'PushOn', { object_id: id, interval_ms: 200, wait: true });
    const reports = path.join(agent.dataDir, 'reports.jsonl');
    const count = (): number => (fs.existsSync(reports) ? fs.readFileSync(reports, 'utf8').split('\n').filter((l) => l.includes(id)).length : 0);
    await waitFor('reports before', () => (count() >= 2 ? true : undefined));
    for (const app of ['collector', 'reporter']) {
      await agent.restart(app);
      const before = count();
      await waitFor(`reports after the ${app} restarted`, () => (count() >= before + 3 ? true : undefined), 15_000, 100);
    }
    await api(agent, 'Delete', { object_id: id, wait: true });
  });

  it('an Update made while the manager restarts waits for it and is answered SUCCEEDED; the cgroup holds the last', async () => {
    const ack = await api(agent, 'Create', { spec: { name: 'sep-update', kind: 'KIND_PROCESS', resources: { memory_bytes: 32 << 20 }, process: { command: ['sleep', '600'] } }, wait: true });
    const id: string = ack.body.objectId;
    const client = apiClient(agent.address, agent.token);
    try {
      // The Update lands before the stop, during it (the manager answers what it runs and hands back what comes), or while it is down.
      for (const [i, delayMs] of [0, 20, 80, 200].entries()) {
        const bytes = (40 + i) << 20;
        const [, answer] = await Promise.all([
          agent.restart('manager', 'SIGTERM'),
          new Promise((r) => setTimeout(r, delayMs)).then(() => client.call('update', v1.UpdateRequest.fromPartial({ objectId: id, resources: { memoryBytes: bytes }, wait: true }))),
        ]);
        assert.equal(answer.status, v1.EventStatus.EVENT_STATUS_SUCCEEDED, `update ${i} (after ${delayMs} ms): ${answer.error}`);
      }
      const once = await api(agent, 'PushOnce', { object_id: id });
      assert.equal(once.body.memoryLimitBytes, String(43 << 20));
    } finally {
      client.close();
      await api(agent, 'Delete', { object_id: id, wait: true });
    }
  });

  it('cleanup removes a collect task that has no object behind it', async () => {
    const collector = agent.addresses.collector;
    const token = agent.internalToken;
    const made = await bufCurl(collector, 'agent.internal.v1.Collector/CreateTask', { object_id: 'obj-stray', kind: 'KIND_CGROUP' }, { token });
    assert.ok(made.ok, JSON.stringify(made));
    await waitFor('stray task removed', async () => ((await bufCurl(collector, 'agent.internal.v1.Collector/GetTask', { object_id: 'obj-stray' }, { token })).error?.code === 'not_found' ? true : undefined), 10_000, 200);
  });

  it('every internal service refuses a call without the internal token, or with a user token', async () => {
    const calls: Array<[string, string, object]> = [
      [agent.addresses.agentcore, 'agent.internal.v1.AgentCore/Publish', { create: { spec: { name: 'intruder', kind: 'KIND_PROCESS', process: { command: ['/bin/sleep', '60'] } } } }],
      [agent.addresses.manager, 'agent.internal.v1.Manager/CreateObject', { object_id: 'obj-intruder', spec: { name: 'intruder', kind: 'KIND_PROCESS', process: { command: ['/bin/sleep', '60'] } } }],
      [agent.addresses.collector, 'agent.internal.v1.Collector/CreateTask', { object_id: 'obj-intruder', kind: 'KIND_CGROUP' }],
      [agent.addresses.reporter, 'agent.internal.v1.Reporter/ListReports', {}],
    ];
    for (const [address, method, body] of calls) {
      const none = await bufCurl(address, method, body);
      assert.equal(none.error?.code, 'unauthenticated', `${method} without a token: ${JSON.stringify(none)}`);
      const user = await bufCurl(address, method, body, { token: agent.token });
      assert.equal(user.error?.code, 'unauthenticated', `${method} with the admin token: ${JSON.stringify(user)}`);
    }
    // Nothing was made: no object named intruder, no task for it.
    const list = await api(agent, 'List', {});
    assert.ok(!JSON.stringify(list.body).includes('intruder'), JSON.stringify(list.body));
    const task = await bufCurl(agent.addresses.collector, 'agent.internal.v1.Collector/GetTask', { object_id: 'obj-intruder' }, { token: agent.internalToken });
    assert.equal(task.error?.code, 'not_found');
  });

  it('each service refuses to start without its fixed address', async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'apps/collector/dist/main.js')], { env: { ...process.env, AGENT_REPORTER_ADDR: '127.0.0.1:1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 1);
    assert.match(err, /AGENT_COLLECTOR_LISTEN/);
  });
});

describe("the apiserver's copy of the objects (five processes)", () => {
  let agent: Awaited<ReturnType<typeof startSeparateAgent>>;
  let client: Api;
  const sleeper = (name: string, wait: boolean): v1.CreateRequest => v1.CreateRequest.fromPartial({ spec: { name, kind: v1.Kind.KIND_PROCESS, process: { command: ['sleep', '600'] } }, wait });

  before(async () => {
    agent = await startSeparateAgent();
    client = apiClient(agent.address, agent.token);
  });
  after(async () => {
    client?.close();
    await agent?.stop();
  });

  it('shows every change answered to the read after it: create (not waited for), update, delete, 30 times over', async () => {
    for (let i = 0; i < 30; i++) {
      const ack = await client.call('create', sleeper(`ryw-${i}`, false));
      const made = await client.call('get', { objectId: ack.objectId });
      assert.equal(made.objectId, ack.objectId, 'the accepted create is there at once');
      await client.call('update', v1.UpdateRequest.fromPartial({ objectId: ack.objectId, labels: { round: String(i) }, wait: true }));
      const updated = await client.call('get', { objectId: ack.objectId });
      assert.deepEqual(updated.spec?.labels, { round: String(i) }, `round ${i}`);
      const listed = await client.call('list', v1.ListRequest.fromPartial({ labels: { round: String(i) } }));
      assert.deepEqual(listed.objects.map((o) => o.objectId), [ack.objectId]);
      await client.call('delete', { objectId: ack.objectId, wait: true });
      assert.equal((await client.call('get', { objectId: ack.objectId })).state, v1.State.STATE_DELETED);
    }
  });

  it('answers Get and List while agentcore does not (stopped): a read is one hop', async () => {
    const ack = await client.call('create', sleeper('one-hop', true));
    // The first read after a change asks agentcore how far the copy must be; the reads after it need nothing of agentcore.
    await client.call('get', { objectId: ack.objectId });
    const agentcore = agent.pids[1]!;
    process.kill(agentcore, 'SIGSTOP');
    try {
      const o = await client.call('get', { objectId: ack.objectId }, { timeoutMs: 2_000 });
      assert.equal(o.state, v1.State.STATE_RUNNING);
      const listed = await client.call('list', v1.ListRequest.fromPartial({}), { timeoutMs: 2_000 });
      assert.ok(listed.objects.some((x) => x.objectId === ack.objectId));
      await assert.rejects(client.call('get', { objectId: 'obj-none' }, { timeoutMs: 2_000 }), (e: unknown) => e instanceof NotFoundError && /no object obj-none/.test(e.message));
    } finally {
      process.kill(agentcore, 'SIGCONT');
    }
    await client.call('delete', { objectId: ack.objectId, wait: true });
  });

  it('after agentcore restarts, reads answer from a fresh copy, and changes after it show', async () => {
    const ack = await client.call('create', sleeper('across-restart', true));
    await agent.restart('agentcore');
    const back = await waitFor('the object, read again', async () => client.call('get', { objectId: ack.objectId }, { timeoutMs: 2_000 }).catch(() => undefined), 20_000, 200);
    assert.equal(back.state, v1.State.STATE_RUNNING);
    await client.call('update', v1.UpdateRequest.fromPartial({ objectId: ack.objectId, labels: { after: 'restart' }, wait: true }));
    assert.deepEqual((await client.call('get', { objectId: ack.objectId })).spec?.labels, { after: 'restart' });
    await client.call('delete', { objectId: ack.objectId, wait: true });
  });
});
