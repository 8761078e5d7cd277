// The five services as five processes, wired by address as in compose.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { api, bufCurl, freePort, removeCgroupParent, ROOT, waitFor } from './harness';

describe('five services as separate processes', () => {
  const children: ChildProcess[] = [];
  let apiAddr = '';
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-sep-'));
  const cgroupParent = `agent-sep-${randomBytes(4).toString('hex')}`;

  before(async () => {
    const [a, c, m, co, r] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    const addr = (p: number): string => `127.0.0.1:${p}`;
    apiAddr = addr(a);
    const env = {
      ...process.env,
      AGENT_DATA_DIR: dataDir,
      AGENT_CGROUP_PARENT: cgroupParent,
      AGENT_LISTEN: addr(a),
      AGENT_AGENTCORE_LISTEN: addr(c),
      AGENT_MANAGER_LISTEN: addr(m),
      AGENT_COLLECTOR_LISTEN: addr(co),
      AGENT_REPORTER_LISTEN: addr(r),
      AGENT_AGENTCORE_ADDR: addr(c),
      AGENT_MANAGER_ADDR: addr(m),
      AGENT_COLLECTOR_ADDR: addr(co),
      AGENT_REPORTER_ADDR: addr(r),
    };
    // Started in reverse dependency order on purpose: each waits for its peers.
    for (const app of ['apiserver', 'agentcore', 'collector', 'reporter', 'manager']) {
      children.push(spawn(process.execPath, [path.join(ROOT, `apps/${app}/dist/main.js`)], { env, stdio: ['ignore', 'ignore', process.env.AGENT_E2E_VERBOSE ? 'inherit' : 'ignore'] }));
    }
    for (const [port, svc] of [[a, 'agent.v1.AgentService'], [c, 'agent.internal.v1.AgentCore'], [m, 'agent.internal.v1.Manager'], [co, 'agent.internal.v1.Collector'], [r, 'agent.internal.v1.Reporter']] as const) {
      await waitFor(`${svc} healthy`, async () => {
        const h = await bufCurl(addr(port), 'grpc.health.v1.Health/Check', { service: svc }).catch(() => undefined);
        return h?.body?.status === 'SERVING' ? true : undefined;
      }, 20_000, 200);
    }
  });

  after(async () => {
    await Promise.all(children.map((c) => new Promise<void>((resolve) => (c.exitCode !== null ? resolve() : (c.once('exit', () => resolve()), c.kill('SIGTERM'))))));
    removeCgroupParent(cgroupParent);
  });

  it('creates, reports on and deletes a process across the five', async () => {
    const agent = { address: apiAddr };
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
