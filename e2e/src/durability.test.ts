// Nothing accepted is lost: a full data directory, a damaged record, events
// and request_ids across restarts, and a Delete a kill interrupted. All on the
// real daemon; the full disk is a small tmpfs mounted as its data directory.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LmdbStore } from '@agent/store';
import { api, bufCurl, fillDisk, freePort, isAlive, mountTmpfs, removeCgroupParent, startAgent, waitFor, type Agent, type Tmpfs } from '@agent/testkit';

/** The agentcore server's address (its health carries the store's components). */
function coreAddress(agent: Agent): string {
  const line = [...agent.logs].reverse().find((l) => l.msg === 'grpc server listening' && l.module === 'agentcore') as unknown as { address: string };
  return line.address;
}

async function storeHealth(agent: Agent, service = 'agent.store'): Promise<string> {
  const h = await bufCurl(coreAddress(agent), 'grpc.health.v1.Health/Check', { service });
  return (h.body as { status?: string }).status ?? h.error?.code ?? '';
}

/** Every object, over as many pages as it takes (the padded objects fill a page quickly). */
async function listAll(agent: Agent): Promise<unknown[]> {
  const out: unknown[] = [];
  let page_token = '';
  do {
    const r = await api(agent, 'List', { page_token });
    assert.ok(r.ok, JSON.stringify(r.error));
    out.push(...((r.body.objects as unknown[] | undefined) ?? []));
    page_token = (r.body.nextPageToken as string | undefined) ?? '';
  } while (page_token !== '');
  return out;
}

/** The store's health as the public address answers it (mirrored from agentcore). */
async function apiHealth(agent: Agent): Promise<string> {
  const h = await bufCurl(agent.address, 'grpc.health.v1.Health/Check', { service: 'agent.store' });
  return (h.body as { status?: string }).status ?? h.error?.code ?? '';
}

const sleeper = (name: string, env: string[] = []): object => ({ spec: { name, kind: 'KIND_PROCESS', process: { command: ['sleep', '600'], env } }, wait: true });

describe('a data directory that fills up (tmpfs)', () => {
  let disk: Tmpfs;
  before(() => (disk = mountTmpfs('24m')));
  after(() => disk.unmount());

  it('refuses changes with RESOURCE_EXHAUSTED, keeps reads, restarts while full, and loses no acknowledged object', async () => {
    const where = { address: `127.0.0.1:${await freePort()}`, dataDir: disk.dir, cgroupParent: `agent-full-${process.pid}`, hostId: `full-${process.pid}` };
    const env = { AGENT_HEALTH_MS: '300' };
    let agent = await startAgent(env, where);
    const acked = new Map<string, number>(); // object id -> pid
    const filler = path.join(disk.dir, 'filler');
    try {
      for (let i = 0; i < 2; i++) {
        const a = await api(agent, 'Create', sleeper(`before-${i}`));
        assert.equal(a.body.state, 'STATE_RUNNING', JSON.stringify(a));
        acked.set(a.body.objectId, (await api(agent, 'Get', { object_id: a.body.objectId })).body.pid);
      }
      fillDisk(filler, 256 * 1024);
      // Creates with a large env go on until the room the store allocated ahead is used up.
      let refusal: { code: string; message: string } | undefined;
      for (let i = 0; i < 200 && !refusal; i++) {
        const r = await api(agent, 'Create', sleeper(`full-${i}`, Array.from({ length: 24 }, (_, k) => `PAD${k}=${'x'.repeat(4000)}`)));
        if (r.ok) acked.set(r.body.objectId, (await api(agent, 'Get', { object_id: r.body.objectId })).body.pid);
        else refusal = r.error;
      }
      assert.ok(refusal, 'a create was refused');
      assert.equal(refusal.code, 'resource_exhausted', JSON.stringify(refusal));
      assert.match(refusal.message, /no space left on device \(ENOSPC\)/);
      assert.equal(await storeHealth(agent), 'NOT_SERVING', 'health says the store cannot write');
      await waitFor('the apiserver says so too', async () => ((await apiHealth(agent)) === 'NOT_SERVING' ? true : undefined), 2_000, 50);
      // Nothing was started for the refused create.
      const listed = (await listAll(agent)) as Array<{ objectId: string; spec: { name: string } }>;
      assert.deepEqual(listed.map((o) => o.objectId).sort(), [...acked.keys()].sort(), 'reads work; only acknowledged objects exist');

      // A restart while the disk is still full: the agent comes up and has every object.
      assert.equal(await agent.stop('SIGKILL'), null);
      agent = await startAgent(env, where);
      const back = (await listAll(agent)) as Array<{ objectId: string; state: string; pid: number }>;
      assert.deepEqual(back.map((o) => o.objectId).sort(), [...acked.keys()].sort());
      for (const o of back) assert.equal(o.pid, acked.get(o.objectId), 'the same process, adopted');
      await waitFor('store NOT_SERVING after the restart', async () => ((await storeHealth(agent)) === 'NOT_SERVING' ? true : undefined), 5_000, 200);

      // Space comes back: health recovers, creates work again.
      fs.rmSync(filler);
      await waitFor('store SERVING again', async () => ((await storeHealth(agent)) === 'SERVING' ? true : undefined), 10_000, 200);
      await waitFor('and on the apiserver', async () => ((await apiHealth(agent)) === 'SERVING' ? true : undefined), 2_000, 50);
      const a = await api(agent, 'Create', sleeper('after'));
      assert.equal(a.body.state, 'STATE_RUNNING', JSON.stringify(a));
      acked.set(a.body.objectId, (await api(agent, 'Get', { object_id: a.body.objectId })).body.pid);

      await agent.stop();
      agent = await startAgent(env, where);
      const final = (await listAll(agent)) as Array<{ objectId: string; state: string }>;
      assert.deepEqual(final.map((o) => o.objectId).sort(), [...acked.keys()].sort(), 'every acknowledged object after a clean restart');
      for (const o of final) assert.equal(o.state, 'STATE_RUNNING', o.objectId);
    } finally {
      fs.rmSync(filler, { force: true });
      for (const id of acked.keys()) await api(agent, 'Delete', { object_id: id, wait: true });
      await agent.stop();
      for (const pid of acked.values()) assert.equal(isAlive(pid), false, `pid ${pid} gone`);
    }
  });
});

describe('a damaged store record', () => {
  it('is named in the log and in health, and every other object is kept', async () => {
    let agent = await startAgent();
    const ids: string[] = [];
    const pids: number[] = [];
    try {
      for (const name of ['keep', 'damage']) {
        const a = await api(agent, 'Create', sleeper(name));
        assert.equal(a.body.state, 'STATE_RUNNING');
        ids.push(a.body.objectId);
        pids.push((await api(agent, 'Get', { object_id: a.body.objectId })).body.pid);
      }
      await agent.stop();
      const store = await LmdbStore.open(path.join(agent.dataDir, 'state'));
      const key = (id: string): string => `workloads.${agent.hostId}.${id}`;
      const good = (await store.get(key(ids[1]!)))!;
      await store.put(key(ids[1]!), good.slice(0, good.length / 2)); // truncated
      await store.put(key('obj-empty'), '{}');
      await store.put(key('obj-null'), 'null');
      await store.close();

      agent = await startAgent({}, agent);
      for (const k of [key(ids[1]!), key('obj-empty'), key('obj-null')]) {
        assert.ok(agent.logs.some((l) => l.msg === 'damaged store record skipped' && (l as unknown as { key: string }).key === k), `log names ${k}`);
        assert.equal(await storeHealth(agent, `agent.store.damaged/${k}`), 'NOT_SERVING', `health names ${k}`);
      }
      assert.equal(await storeHealth(agent), 'SERVING');
      const list = (await listAll(agent)) as Array<{ objectId: string; state: string; pid: number }>;
      assert.deepEqual(list.map((o) => [o.objectId, o.state, o.pid]), [[ids[0], 'STATE_RUNNING', pids[0]]]);
      const del = await api(agent, 'Delete', { object_id: ids[0], wait: true });
      assert.equal(del.body.state, 'STATE_DELETED');
      assert.equal(isAlive(pids[0]!), false);
    } finally {
      for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL'); // the damaged record's process is the test's to clean
      await agent.stop();
      // And its cgroup: no agent knows that object any more, and it would keep the test's cgroup root in every hierarchy.
      const damaged = ids[1] === undefined ? [] : [`proc-${ids[1]}`];
      await waitFor('the damaged object\'s cgroup removed', () => {
        removeCgroupParent(agent.cgroupParent, damaged);
        return !fs.existsSync(path.join('/sys/fs/cgroup/memory', agent.cgroupParent)) || undefined;
      });
    }
  });
});

describe('events across restarts', () => {
  it('GetEvent and a repeated request_id answer the same after SIGKILL, until the event ages out', async () => {
    const env = { AGENT_EVENT_RETENTION_MS: '2000' };
    let agent = await startAgent(env);
    let objectId = '';
    try {
      const first = await api(agent, 'Create', { ...sleeper('idem'), request_id: 'req-1' });
      assert.equal(first.body.state, 'STATE_RUNNING');
      objectId = first.body.objectId;
      assert.equal(await agent.stop('SIGKILL'), null);
      agent = await startAgent(env, agent);
      const ev = await api(agent, 'GetEvent', { event_id: first.body.eventId });
      assert.equal(ev.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(ev.body));
      const again = await api(agent, 'Create', { ...sleeper('idem'), request_id: 'req-1' });
      assert.equal(again.body.eventId, first.body.eventId, 'the first ack again');
      assert.equal(again.body.objectId, objectId);
      // Aged out: the event is gone, and so is the request_id (no empty ack: the name is still taken).
      await new Promise((r) => setTimeout(r, 2_500));
      await api(agent, 'PushOn', { object_id: objectId, interval_ms: 1000, wait: true }); // any new event trims
      assert.equal((await api(agent, 'GetEvent', { event_id: first.body.eventId })).error?.code, 'not_found');
      const late = await api(agent, 'Create', { ...sleeper('idem'), request_id: 'req-1' });
      assert.equal(late.error?.code, 'already_exists', JSON.stringify(late));
    } finally {
      if (objectId) await api(agent, 'Delete', { object_id: objectId, wait: true });
      await agent.stop();
    }
  });

  it('a Delete a SIGKILL interrupted runs again after the restart', async () => {
    const env = { AGENT_STOP_GRACE_MS: '4000' };
    let agent = await startAgent(env);
    // Ignores SIGTERM: the Delete waits out the grace period, and the agent is killed meanwhile.
    const a = await api(agent, 'Create', { spec: { name: 'stubborn', kind: 'KIND_PROCESS', process: { command: ['sh', '-c', 'trap "" TERM; while :; do sleep 0.2; done'] } }, wait: true });
    assert.equal(a.body.state, 'STATE_RUNNING');
    const pid = (await api(agent, 'Get', { object_id: a.body.objectId })).body.pid as number;
    try {
      const del = await api(agent, 'Delete', { object_id: a.body.objectId });
      assert.equal(del.body.status, 'EVENT_STATUS_QUEUED');
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(await agent.stop('SIGKILL'), null);
      assert.ok(isAlive(pid), 'still there when the agent died');
      agent = await startAgent(env, agent);
      const done = await waitFor('the Delete finished', async () => {
        const e = await api(agent, 'GetEvent', { event_id: del.body.eventId });
        return e.body.status === 'EVENT_STATUS_SUCCEEDED' || e.body.status === 'EVENT_STATUS_FAILED' ? e.body : undefined;
      }, 15_000, 200);
      assert.equal(done.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(done));
      assert.equal((await api(agent, 'Get', { object_id: a.body.objectId })).body.state, 'STATE_DELETED');
      await waitFor('process gone', async () => (isAlive(pid) ? undefined : true), 5_000, 100);
    } finally {
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
      await agent.stop();
    }
  });
});

/** Starts `sleep 600` with exactly this pid (root sets the kernel's last pid; another process may race it: retried). */
function spawnWithPid(pid: number): number | undefined {
  for (let i = 0; i < 50; i++) {
    fs.writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    const child = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' });
    child.unref();
    if (child.pid === pid) return pid;
    if (child.pid) process.kill(child.pid, 'SIGKILL');
  }
  return undefined;
}

describe('a stopped process whose pid was reused', () => {
  it('Delete leaves the stranger with the old pid alone', async () => {
    const agent = await startAgent();
    let stranger: number | undefined;
    try {
      const a = await api(agent, 'Create', sleeper('reused'));
      assert.equal(a.body.state, 'STATE_RUNNING');
      const pid = (await api(agent, 'Get', { object_id: a.body.objectId })).body.pid as number;
      process.kill(pid, 'SIGKILL');
      await waitFor('STOPPED', async () => ((await api(agent, 'Get', { object_id: a.body.objectId })).body.state === 'STATE_STOPPED' ? true : undefined), 5_000, 100);
      stranger = spawnWithPid(pid);
      assert.equal(stranger, pid, 'a stranger now has the old pid');
      const del = await api(agent, 'Delete', { object_id: a.body.objectId, wait: true });
      assert.equal(del.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(del.body));
      assert.equal(del.body.state, 'STATE_DELETED');
      assert.ok(isAlive(pid), 'the stranger was not signalled');
    } finally {
      if (stranger && isAlive(stranger)) process.kill(stranger, 'SIGKILL');
      await agent.stop();
    }
  });
});
