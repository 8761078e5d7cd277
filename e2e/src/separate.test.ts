// The five services as five processes, wired by address as in compose.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { api, bufCurl, ROOT, startSeparateAgent, waitFor } from '@agent/testkit';

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
