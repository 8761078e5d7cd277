// Intent first: SIGKILL at random points during a burst of 50 process and 10
// container creates, five times in a row, on the real daemon and Docker engine.
// After each restart every workload that carries the agent's marks (container
// labels, proc-<object id> cgroups, the test's token in a command line)
// belongs to exactly one live object, and every acknowledged create is there
// and RUNNING; deleting all objects leaves nothing behind.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Label } from '@agent/option';
import { v1 } from '@agent/proto';
import { apiClient, BUSYBOX, sh, startAgent, waitFor, type Agent, type Api } from '@agent/testkit';

/** The test's processes and containers run `sleep TOKEN`: how strays are found in /proc. */
const TOKEN = String(70_000 + (process.pid % 10_000));
const ROUNDS = 5;
const PROCESSES = 50;
const CONTAINERS = 10;

interface Listed {
  readonly objectId: string;
  readonly state: v1.State;
  readonly kind: v1.Kind;
  readonly pid: number;
  readonly runtimeId: string;
  readonly lastError: string;
}

async function listAll(client: Api): Promise<Map<string, Listed>> {
  const { objects } = await client.call('list', v1.ListRequest.fromPartial({}));
  return new Map(objects.map((o) => [o.objectId, { objectId: o.objectId, state: o.state, kind: o.spec?.kind ?? v1.Kind.KIND_UNSPECIFIED, pid: o.pid, runtimeId: o.runtimeId, lastError: o.lastError }]));
}

/** Pids whose command line carries the token: the workloads, and any launcher still about. */
function markedPids(): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (argv.includes(TOKEN) && argv.some((a) => a.endsWith('sleep'))) out.push(Number(e));
  }
  return out;
}

/** The pids controller's cgroup of a pid (v1), or the unified one (v2). */
function cgroupOf(pid: number): string {
  let text = '';
  try {
    text = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return '';
  }
  const lines = text.trim().split('\n').map((l) => l.split(':'));
  return (lines.find((l) => l[1]?.split(',').includes('pids')) ?? lines.find((l) => l[1] === ''))?.[2] ?? '';
}

/** The cgroups below the test agent's root (v1: the pids hierarchy; v2: the unified one). */
function cgroupDirs(parent: string): string[] {
  const root = fs.existsSync('/sys/fs/cgroup/pids') ? '/sys/fs/cgroup/pids' : '/sys/fs/cgroup';
  try {
    return fs.readdirSync(path.join(root, parent), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch {
    return [];
  }
}

async function markedContainers(hostId: string): Promise<Array<{ id: string; objectId: string; state: string }>> {
  const out = await sh('docker', ['ps', '-a', '--no-trunc', '--filter', `label=${Label.HostId}=${hostId}`, '--format', `{{.ID}} {{.Label "${Label.ObjectId}"}} {{.State}}`]);
  return out.split('\n').filter(Boolean).map((l) => {
    const [id = '', objectId = '', state = ''] = l.split(' ');
    return { id, objectId, state };
  });
}

/** Every mark on the host belongs to exactly one live object; undefined when so, else what is wrong. */
async function strays(agent: Agent, objects: Map<string, Listed>): Promise<string | undefined> {
  const live = (id: string): Listed | undefined => {
    const o = objects.get(id);
    return o && o.state !== v1.State.STATE_DELETED ? o : undefined;
  };
  const problems: string[] = [];
  const perObject = new Map<string, number>();
  const containers = await markedContainers(agent.hostId);
  for (const c of containers) {
    const o = live(c.objectId);
    if (!o) problems.push(`container ${c.id.slice(0, 12)} (${c.state}) of ${c.objectId}: no live object`);
    else if (o.runtimeId !== c.id) problems.push(`container ${c.id.slice(0, 12)} is not ${c.objectId}'s (${o.runtimeId.slice(0, 12)})`);
    if (c.state === 'created') problems.push(`container ${c.id.slice(0, 12)} of ${c.objectId} is half-made`);
    perObject.set(c.objectId, (perObject.get(c.objectId) ?? 0) + 1);
  }
  for (const [id, n] of perObject) if (n > 1) problems.push(`${id} has ${n} containers`);
  for (const dir of cgroupDirs(agent.cgroupParent)) {
    const id = dir.replace(/^proc-/, '');
    if (!dir.startsWith('proc-') || !live(id)) problems.push(`cgroup ${dir}: no live object`);
  }
  const byContainer = new Map(containers.map((c) => [c.id, c.objectId]));
  for (const pid of markedPids()) {
    const cg = cgroupOf(pid);
    const proc = new RegExp(`^/${agent.cgroupParent}/proc-(obj-[0-9a-f]+)$`).exec(cg);
    if (proc) {
      const o = live(proc[1]!);
      if (!o || o.pid !== pid) problems.push(`pid ${pid} in ${cg}: not its object's process (${o ? o.pid : 'no live object'})`);
      continue;
    }
    const owner = [...byContainer.keys()].find((id) => cg.includes(id));
    if (!owner || !live(byContainer.get(owner)!)) problems.push(`pid ${pid} in ${cg || '(gone)'}: belongs to no object`);
  }
  return problems.length > 0 ? problems.join('\n') : undefined;
}

const specOf = (round: number, i: number): v1.ObjectSpec =>
  i < CONTAINERS
    ? v1.ObjectSpec.fromPartial({ name: `r${round}-c${i}`, kind: v1.Kind.KIND_CONTAINER, container: { image: BUSYBOX, command: ['sleep', TOKEN] } })
    : v1.ObjectSpec.fromPartial({ name: `r${round}-p${i}`, kind: v1.Kind.KIND_PROCESS, process: { command: ['sleep', TOKEN] } });

describe('SIGKILL during a burst of creates, five times', () => {
  it('leaves every marked workload to exactly one object, loses no acknowledged create, and Delete leaves nothing', async () => {
    const env = { AGENT_STOP_GRACE_MS: '500' };
    let agent = await startAgent(env);
    let client = apiClient(agent.address, agent.token);
    const acked = new Set<string>();
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const sends = Array.from({ length: CONTAINERS + PROCESSES }, (_, i) =>
          client.call('create', v1.CreateRequest.fromPartial({ spec: specOf(round, i) })).then(
            (ack) => void acked.add(ack.objectId),
            () => undefined, // cut off by the kill: it may or may not have been recorded
          ),
        );
        // Somewhere between before the first create is recorded and after the last has run.
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 2_000)));
        assert.equal(await agent.stop('SIGKILL'), null);
        await Promise.all(sends);
        client.close();

        agent = await startAgent(env, agent);
        client = apiClient(agent.address, agent.token);
        const objects = await waitFor('no object PENDING', async () => {
          const all = await listAll(client);
          return [...all.values()].some((o) => o.state === v1.State.STATE_PENDING) ? undefined : all;
        }, 60_000, 250);
        for (const id of acked) {
          const o = objects.get(id);
          assert.ok(o, `round ${round}: acknowledged ${id} is there`);
          assert.equal(v1.State[o.state], 'STATE_RUNNING', `round ${round}: ${id} ${o.lastError}`);
        }
        for (const o of objects.values()) assert.notEqual(o.state, v1.State.STATE_FAILED, `round ${round}: ${o.objectId} failed: ${o.lastError}`);
        let last: string | undefined;
        await waitFor(`round ${round}: every mark belongs to one object`, async () => (last = await strays(agent, await listAll(client))) === undefined ? true : undefined, 10_000, 250).catch(() => assert.fail(last));
      }
    } finally {
      const objects = await listAll(client).catch(() => new Map<string, Listed>());
      const ids = [...objects.values()].filter((o) => o.state !== v1.State.STATE_DELETED).map((o) => o.objectId);
      for (let i = 0; i < ids.length; i += 20) {
        await Promise.all(ids.slice(i, i + 20).map((id) => client.call('delete', v1.DeleteRequest.fromPartial({ objectId: id, wait: true }), { timeoutMs: 60_000 }).catch(() => undefined)));
      }
      client.close();
      await agent.stop();
    }
    assert.deepEqual(await markedContainers(agent.hostId), [], 'no container left');
    assert.deepEqual(cgroupDirs(agent.cgroupParent), [], 'no cgroup left');
    await waitFor('no process left', () => (markedPids().length === 0 ? true : undefined), 5_000, 100).catch(() => assert.fail(`processes left: ${markedPids().join(', ')}`));
  });
});
