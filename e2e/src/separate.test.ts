// The five services as five processes, wired by address as in compose.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { api, ROOT, startSeparateAgent } from '@agent/testkit';

describe('five services as separate processes', () => {
  let agent: Awaited<ReturnType<typeof startSeparateAgent>>;

  before(async () => {
    agent = await startSeparateAgent();
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

  it('each service refuses to start without its fixed address', async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'apps/collector/dist/main.js')], { env: { ...process.env, AGENT_REPORTER_ADDR: '127.0.0.1:1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 1);
    assert.match(err, /AGENT_COLLECTOR_LISTEN/);
  });
});
