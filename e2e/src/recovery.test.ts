// SIGKILL and back: the agent finds its workloads again, resumes what was
// pushing, marks what vanished meanwhile, and starts nothing anew.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { api, BUSYBOX, isAlive, sh, startAgent, waitFor } from '@agent/testkit';

describe('restart after SIGKILL', () => {
  it('5 containers and 3 processes, 2 pushing, one container removed while down', async () => {
    let agent = await startAgent({ AGENT_STOP_GRACE_MS: '500' });
    const containers: string[] = [];
    const processes: string[] = [];
    for (let i = 0; i < 5; i++) {
      const a = await api(agent, 'Create', { spec: { name: `rc${i}`, kind: 'KIND_CONTAINER', resources: { memory_bytes: 32 << 20 }, container: { image: BUSYBOX, command: ['sleep', '600'] } }, wait: true });
      assert.equal(a.body.state, 'STATE_RUNNING', JSON.stringify(a));
      containers.push(a.body.objectId);
    }
    for (let i = 0; i < 3; i++) {
      const a = await api(agent, 'Create', { spec: { name: `rp${i}`, kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] } }, wait: true });
      assert.equal(a.body.state, 'STATE_RUNNING');
      processes.push(a.body.objectId);
    }
    const pushed = [containers[0]!, processes[0]!];
    for (const id of pushed) assert.equal((await api(agent, 'PushOn', { object_id: id, interval_ms: 200, wait: true })).body.status, 'EVENT_STATUS_SUCCEEDED');
    const before = new Map<string, { runtimeId: string; pid: number }>();
    for (const id of [...containers, ...processes]) {
      const o = (await api(agent, 'Get', { object_id: id })).body;
      before.set(id, { runtimeId: o.runtimeId, pid: o.pid });
    }

    assert.equal(await agent.stop('SIGKILL'), null);
    const removed = containers[4]!;
    await sh('docker', ['rm', '-f', before.get(removed)!.runtimeId]);
    const reportFile = path.join(agent.dataDir, 'reports.jsonl');
    const linesBefore = fs.readFileSync(reportFile, 'utf8').split('\n').length;
    // The logs of an object that is gone (a kill cut its Delete short): swept at the restart; a live process's stay.
    const logDir = path.join(agent.dataDir, 'logs');
    const orphans = ['obj-gone-before.log', 'obj-gone-before.log.1'].map((f) => path.join(logDir, f));
    for (const f of orphans) {
      fs.writeFileSync(f, 'old\n', { mode: 0o600 });
      fs.utimesSync(f, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    }

    agent = await startAgent({ AGENT_STOP_GRACE_MS: '500' }, agent);
    try {
      const list = (await api(agent, 'List', { include_deleted: true })).body.objects as Array<{ objectId: string; state: string; pid: number; runtimeId: string; pushing?: boolean; spec: { kind: string } }>;
      assert.equal(list.length, 8);
      const byId = new Map(list.map((o) => [o.objectId, o]));
      for (const id of containers.slice(0, 4)) {
        assert.equal(byId.get(id)?.state, 'STATE_RUNNING', id);
        assert.equal(byId.get(id)?.runtimeId, before.get(id)!.runtimeId, 'the same container, not a new one');
      }
      assert.equal(byId.get(removed)?.state, 'STATE_DELETED');
      assert.deepEqual(orphans.filter((f) => fs.existsSync(f)), [], 'the logs of a gone object are swept');
      for (const id of processes) assert.ok(fs.existsSync(path.join(logDir, `${id}.log`)), `the log of ${id} stays`);
      for (const id of processes) {
        assert.equal(byId.get(id)?.state, 'STATE_RUNNING', id);
        assert.equal(byId.get(id)?.pid, before.get(id)!.pid, 'the same process, not a new one');
        assert.ok(isAlive(before.get(id)!.pid));
      }
      assert.deepEqual(list.filter((o) => o.pushing).map((o) => o.objectId).sort(), [...pushed].sort());
      // Nothing new was started.
      const running = (await sh('docker', ['ps', '-q', '--filter', `label=io.agent.host-id=${agent.hostId}`])).split('\n').filter(Boolean);
      assert.equal(running.length, 4);
      // The two pushes resumed.
      await waitFor('reports of both pushed objects after the restart', () => {
        const fresh = fs.readFileSync(reportFile, 'utf8').split('\n').slice(linesBefore).filter(Boolean).map((l) => JSON.parse(l) as { objectId: string });
        return pushed.every((id) => fresh.filter((r) => r.objectId === id).length >= 2) ? true : undefined;
      });
      // Still fully managed: updates and deletes work on what was adopted.
      const upd = await api(agent, 'Update', { object_id: containers[1], resources: { memory_bytes: 48 << 20 }, wait: true });
      assert.equal(upd.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(upd.body));
      // A process adopted after the restart is watched: killing it makes it STOPPED.
      process.kill(before.get(processes[2]!)!.pid, 'SIGKILL');
      await waitFor('adopted process STOPPED', async () => ((await api(agent, 'Get', { object_id: processes[2] })).body.state === 'STATE_STOPPED' ? true : undefined), 5_000, 100);
    } finally {
      for (const id of [...containers, ...processes]) await api(agent, 'Delete', { object_id: id, wait: true });
      assert.equal(await sh('docker', ['ps', '-aq', '--filter', `label=io.agent.host-id=${agent.hostId}`]), '');
      for (const id of processes) assert.equal(isAlive(before.get(id)!.pid), false);
      await agent.stop();
    }
  });
});
