// Network segmentation enforced on real Docker containers by real nftables:
// busybox `nc -ll -e /bin/cat` servers and clients on the default bridge, a
// table of this test's own (AGENT_NFT_TABLE), policies applied through the
// public API.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { BUSYBOX, api, bufCurl, sh, startAgent, tcpConnects, waitFor, type Agent } from '@agent/testkit';

const TABLE = `agent_seg_${process.pid}`;
const PORT = 5432;

type Obj = { objectId: string; runtimeId: string; ip?: string; groups?: string[]; enforcement?: string; policyRevision?: string; state: string };

const tableExists = (): boolean => execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).includes(`inet ${TABLE}`);
/** The table's rules and sets without counters (which change as traffic flows). */
const ruleset = (): string => execFileSync('nft', ['list', 'table', 'inet', TABLE], { encoding: 'utf8' }).replace(/counter packets \d+ bytes \d+/g, 'counter');

let revision = 0;
async function applyPolicy(agent: Agent, groups: Array<[string, string, string]>, rules: Array<Record<string, unknown>> = []): Promise<void> {
  revision += 1;
  const body = { revision, groups: groups.map(([name, app, mode]) => ({ name, selector: { app }, mode })), rules };
  const r = await bufCurl(agent.address, 'agent.v1.PolicyService/ApplyPolicy', body, { token: agent.token });
  assert.equal(r.ok, true, JSON.stringify(r.error));
}

async function create(agent: Agent, name: string, app: string, command: string[]): Promise<Obj> {
  const r = await api(agent, 'Create', { spec: { name, kind: 'KIND_CONTAINER', labels: { app }, container: { image: BUSYBOX, command } }, wait: true });
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assert.equal(r.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(r.body));
  return get(agent, r.body.objectId as string);
}

async function get(agent: Agent, objectId: string): Promise<Obj> {
  const r = await api(agent, 'Get', { objectId });
  assert.equal(r.ok, true, JSON.stringify(r.error));
  return r.body as Obj;
}

const server = (port = PORT): string[] => ['nc', '-ll', '-p', String(port), '-e', '/bin/cat'];
const idle = ['sleep', '3600'];

/** Whether a client container gets an echo back from ip:port (a connection made and used). */
async function reaches(client: Obj, ip: string, port = PORT): Promise<boolean> {
  const out = await sh('docker', ['exec', client.runtimeId, 'sh', '-c', `echo ping-$$ | nc -w 1 ${ip} ${port} 2>/dev/null | head -c 64; true`]).catch(() => '');
  return out.includes('ping-');
}

/** Whether the host's own process gets a TCP connection to ip:port. */
const hostReaches = (ip: string, port = PORT): Promise<boolean> => tcpConnects(ip, port);

describe('network segmentation (real Docker, real nftables)', () => {
  let agent: Agent;
  let db: Obj;
  let web: Obj;
  let other: Obj;

  before(async () => {
    agent = await startAgent({ AGENT_NFT_TABLE: TABLE });
    db = await create(agent, 'seg-db', 'db', server());
    web = await create(agent, 'seg-web', 'web', idle);
    other = await create(agent, 'seg-other', 'other', idle);
    assert.ok(db.ip, 'a running container has its address on the object');
    assert.equal(await reaches(web, db.ip!), true, 'no policy: everything passes');
  });
  after(async () => {
    await agent?.stop();
    if (tableExists()) execFileSync('nft', ['delete', 'table', 'inet', TABLE]);
    await sh('sh', ['-c', `docker ps -aq --filter label=io.agent.host-id=${agent?.hostId ?? 'none'} | xargs -r docker rm -f`]).catch(() => undefined);
  });

  it('protect: an unlisted client is blocked; an allow rule lets it through at once; a rule for another port does not', async () => {
    await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT'], ['web', 'web', 'MODE_PROTECT']]);
    const o = await get(agent, db.objectId);
    assert.deepEqual([o.groups, o.enforcement, Number(o.policyRevision)], [['db'], 'ENFORCEMENT_ENFORCED', revision]);
    assert.equal(await reaches(web, db.ip!), false, 'no rule: blocked');
    await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT'], ['web', 'web', 'MODE_PROTECT']], [{ id: 1, from: 'web', to: 'db', ports: [`tcp/${PORT + 1}`], action: 'ACTION_ALLOW' }]);
    assert.equal(await reaches(web, db.ip!), false, 'a rule for another port');
    // ApplyPolicy answers once the dataplane enforces it: the very next connection passes.
    await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT'], ['web', 'web', 'MODE_PROTECT']], [{ id: 1, from: 'web', to: 'db', ports: [`tcp/${PORT}`], action: 'ACTION_ALLOW' }]);
    assert.equal(await reaches(web, db.ip!), true, 'allowed by rule 1');
    assert.equal(await reaches(other, db.ip!), false, 'rule 1 is for web only: db stays closed to others');
    const got = await bufCurl(agent.address, 'agent.v1.PolicyService/GetPolicy', {}, { token: agent.token });
    assert.ok(Number((got.body.rules as Array<{ hits?: string }>)[0]!.hits ?? 0) >= 1, `hits from the kernel: ${JSON.stringify(got.body.rules)}`);
  });

  it('deny wins over allow', async () => {
    await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT'], ['web', 'web', 'MODE_PROTECT']], [
      { id: 1, from: 'web', to: 'db', ports: [`tcp/${PORT}`], action: 'ACTION_ALLOW' },
      { id: 2, from: 'any', to: 'db', ports: ['any'], action: 'ACTION_DENY' },
    ]);
    assert.equal(await reaches(web, db.ip!), false);
  });

  it('monitor: the same client passes', async () => {
    await applyPolicy(agent, [['db', 'db', 'MODE_MONITOR'], ['web', 'web', 'MODE_MONITOR']]);
    assert.equal(await reaches(web, db.ip!), true);
    assert.equal(await reaches(other, db.ip!), true);
  });

  it('host traffic: "host" in a rule covers the host\'s own processes (input/output hooks)', async () => {
    await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT']]);
    assert.equal(await hostReaches(db.ip!), false, 'the host is not allowed to db');
    await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT']], [{ id: 3, from: 'host', to: 'db', ports: [`tcp/${PORT}`], action: 'ACTION_ALLOW' }]);
    assert.equal(await hostReaches(db.ip!), true, 'rule 3 allows the host');
    assert.equal(await reaches(web, db.ip!), false, 'rule 3 is for the host only');
  });

  it('before the first packet: a protected container connecting in a tight loop from its first instruction gets nothing through (10 runs)', async () => {
    await applyPolicy(agent, [['loop', 'loop', 'MODE_PROTECT']]);
    // The target is open (in no group): only the loop's own egress policy stands in its way.
    const open = await create(agent, 'seg-open', 'open', server(7000));
    const loop = ['sh', '-c', `while true; do echo x | nc -w 1 ${open.ip} 7000 >/dev/null 2>&1 && echo CONNECTED; done`];
    for (let run = 0; run < 10; run++) {
      const c = await create(agent, `seg-loop-${run}`, 'loop', loop);
      assert.equal(c.enforcement, 'ENFORCEMENT_ENFORCED');
      await new Promise((r) => setTimeout(r, 700));
      const logs = await sh('docker', ['logs', c.runtimeId]);
      assert.equal(logs.includes('CONNECTED'), false, `run ${run}: a connection got through: ${logs.slice(0, 200)}`);
      assert.equal((await api(agent, 'Delete', { objectId: c.objectId, wait: true })).ok, true);
    }
    // The same loop outside the group connects at once: the test can fail.
    const control = await create(agent, 'seg-loop-control', 'not-loop', loop);
    await waitFor('the control loop connects', async () => ((await sh('docker', ['logs', control.runtimeId])).includes('CONNECTED') ? true : undefined), 5_000);
    await api(agent, 'Delete', { objectId: control.objectId, wait: true });
    await api(agent, 'Delete', { objectId: open.objectId, wait: true });
  });

  it('SIGKILL: enforcement holds while the agent is down; the restart reconciles to the same rules, no duplicates', async () => {
    await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT'], ['web', 'web', 'MODE_PROTECT']], [{ id: 1, from: 'web', to: 'db', ports: [`tcp/${PORT}`], action: 'ACTION_ALLOW' }]);
    const before = ruleset();
    await agent.stop('SIGKILL');
    assert.equal(await reaches(other, db.ip!), false, 'still blocked with the agent down');
    assert.equal(await reaches(web, db.ip!), true, 'still allowed with the agent down');
    assert.equal(ruleset(), before);
    agent = await startAgent({ AGENT_NFT_TABLE: TABLE }, agent);
    await waitFor('db enforced again', async () => ((await get(agent, db.objectId)).enforcement === 'ENFORCEMENT_ENFORCED' ? true : undefined));
    assert.equal(ruleset(), before, 'the same rule set: nothing added twice, nothing lost');
    assert.equal(await reaches(other, db.ip!), false);
  });

  it('SIGTERM leaves enforcement in place; deleting every member removes everything the agent added', async () => {
    await agent.stop('SIGTERM');
    assert.equal(tableExists(), true, 'a clean stop leaves the kernel enforcing');
    agent = await startAgent({ AGENT_NFT_TABLE: TABLE }, agent);
    for (const o of [db, web, other]) assert.equal((await api(agent, 'Delete', { objectId: o.objectId, wait: true })).ok, true);
    await waitFor('the table is gone', () => (tableExists() ? undefined : true));
  });
});
