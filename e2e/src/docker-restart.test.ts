// The Docker engine goes away and comes back (a socket proxy cut and restored):
// the agent neither crashes nor spins, reconnects with backoff, and replays
// what happened meanwhile.
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { api, BUSYBOX, cpuSeconds, sh, startAgent, startDockerProxy, waitFor, type Agent } from '@agent/testkit';

describe('Docker engine restart', () => {
  const tag = `drst-${randomBytes(3).toString('hex')}`;
  let agent: Agent | undefined;
  let proxy: Awaited<ReturnType<typeof startDockerProxy>> | undefined;

  after(async () => {
    await agent?.stop();
    await proxy?.stop();
    const left = await sh('docker', ['ps', '-aq', '--filter', `label=e2e.tag=${tag}`]);
    if (left) await sh('docker', ['rm', '-f', ...left.split('\n')]);
  });

  it('reconnects and catches up on what happened while it was away', async () => {
    proxy = await startDockerProxy();
    agent = await startAgent({ AGENT_DOCKER_SOCKET: proxy.path, AGENT_DISCOVER: `e2e.tag=${tag}` });
    const a = agent;
    const first = await sh('docker', ['run', '-d', '--init', '--label', `e2e.tag=${tag}`, BUSYBOX, 'sleep', '600']);
    const firstObj = await waitFor('first discovered', async () => {
      const l = (await api(a, 'List', { labels: { 'e2e.tag': tag } })).body.objects as Array<{ objectId: string; runtimeId: string }> | undefined;
      return l?.find((o) => o.runtimeId === first);
    });

    await proxy.down();
    const pid = a.child.pid!;
    const c0 = cpuSeconds(pid);
    // Meanwhile: one container goes, another comes.
    await sh('docker', ['rm', '-f', first]);
    const second = await sh('docker', ['run', '-d', '--init', '--label', `e2e.tag=${tag}`, BUSYBOX, 'sleep', '600']);
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(a.child.exitCode, null, 'the agent crashed');
    const cpu = cpuSeconds(pid) - c0;
    assert.ok(cpu < 1.5, `the agent spun: ${cpu} s of CPU in 3 s`);
    const creating = await api(a, 'Create', { spec: { name: 'while-down', kind: 'KIND_CONTAINER', container: { image: BUSYBOX } }, wait: true });
    assert.equal(creating.body.state, 'STATE_FAILED', 'a create fails clearly while the engine is away');
    assert.match(creating.body.error, /docker/);

    await proxy.up();
    await waitFor('the removed one DELETED', async () => ((await api(a, 'Get', { object_id: firstObj.objectId })).body.state === 'STATE_DELETED' ? true : undefined), 20_000, 200);
    await waitFor('the new one discovered', async () => {
      const l = (await api(a, 'List', { labels: { 'e2e.tag': tag } })).body.objects as Array<{ runtimeId: string; state: string }> | undefined;
      return l?.find((o) => o.runtimeId === second && o.state === 'STATE_RUNNING');
    }, 20_000, 200);
    await api(a, 'Delete', { object_id: creating.body.objectId, wait: true });
  });
});
