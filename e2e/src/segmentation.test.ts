// Network segmentation enforced on real Docker containers by real nftables:
// busybox `nc -ll -e /bin/cat` servers and clients on the default bridge, a
// table of this test's own (AGENT_NFT_TABLE), policies applied through the
// public API.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as net from 'node:net';
import { connect } from '@agent/grpc-kit';
import { policyv1 } from '@agent/proto';
import { BUSYBOX, api, bufCurl, freePort, sh, startAgent, tcpConnects, waitFor, type Agent } from '@agent/testkit';

const TABLE = `agent_seg_${process.pid}`;
// A group of this test's own: the flow log of another agent on this host must not take it.
const NFLOG_GROUP = String(1000 + (process.pid % 60_000));
// Containers started outside the agent with this label are discovered.
const OUTSIDE = `seg.outside=${process.pid}`;
const ENV: Record<string, string> = { AGENT_NFT_TABLE: TABLE, AGENT_NFLOG_GROUP: NFLOG_GROUP, AGENT_DISCOVER: OUTSIDE };
const PORT = 5432;

type Flow = { srcObjectId?: string; dstObjectId?: string; srcGroup?: string; dstGroup?: string; dstPort?: number; protocol?: string; verdict: string; ruleId?: string; mode?: string; count?: string; hostId?: string };

async function listFlows(agent: Agent, body: Record<string, unknown>): Promise<Flow[]> {
  const r = await bufCurl(agent.address, 'agent.v1.PolicyService/ListFlows', body, { token: agent.token });
  assert.equal(r.ok, true, JSON.stringify(r.error));
  return (r.body.flows ?? []) as Flow[];
}

/** The first flow between two objects with this verdict, waited for at most ms. */
function flowSeen(agent: Agent, src: Obj | undefined, dst: Obj, verdict: string, ms = 5_000): Promise<Flow> {
  return waitFor(
    `a ${verdict} flow to ${dst.objectId}`,
    async () => (await listFlows(agent, { objectId: dst.objectId, verdicts: [verdict] })).find((f) => f.dstObjectId === dst.objectId && (!src || f.srcObjectId === src.objectId)),
    ms,
    100,
  );
}

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
    ENV.AGENT_METRICS_LISTEN = `127.0.0.1:${await freePort()}`;
    agent = await startAgent(ENV);
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
    const denied = await flowSeen(agent, web, db, 'VERDICT_DENIED');
    assert.deepEqual([denied.srcGroup, denied.dstGroup, denied.protocol, denied.dstPort, denied.mode, denied.ruleId ?? '0'], ['web', 'db', 'tcp', PORT, 'MODE_PROTECT', '0']);
    assert.equal(denied.hostId, agent.hostId);
    // GET /metrics counts the flow and the dataplane's programming.
    const text = await fetch(`http://${ENV.AGENT_METRICS_LISTEN}/metrics`, { headers: { authorization: `Bearer ${agent.readerToken}` } }).then((r) => r.text());
    assert.ok(Number(/^agent_network_flows_total\{verdict="denied"\} (\d+)$/m.exec(text)?.[1] ?? 0) >= 1, 'the denied flow is counted');
    assert.ok(Number(/^agent_policy_program_seconds_count\{outcome="ok"\} (\d+)$/m.exec(text)?.[1] ?? 0) >= 1, 'the programming is timed');
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

  it('monitor: the same client passes and one VIOLATION is recorded within 1 s', async () => {
    await applyPolicy(agent, [['db', 'db', 'MODE_MONITOR'], ['web', 'web', 'MODE_MONITOR']]);
    const violations = async (): Promise<Flow[]> => (await listFlows(agent, { objectId: db.objectId, verdicts: ['VERDICT_VIOLATION'] })).filter((f) => f.srcObjectId === web.objectId);
    const was = (await violations()).length;
    const t0 = Date.now();
    assert.equal(await reaches(web, db.ip!), true);
    const seen = await waitFor('a violation', async () => ((await violations()).length > was ? Date.now() : undefined), 5_000, 50);
    assert.ok(seen - t0 <= 1_000, `recorded ${seen - t0} ms after the connection started`);
    await new Promise((r) => setTimeout(r, 1_000));
    const all = (await violations()).slice(was);
    assert.deepEqual(all.map((f) => [f.count, f.mode, f.dstPort]), [['1', 'MODE_MONITOR', PORT]], 'one connection, one violation');
    assert.equal(await reaches(other, db.ip!), true);
  });

  it('flows: WatchFlows streams them as they are recorded; bad filters are named', async () => {
    const peer = connect(policyv1.PolicyServiceClient, agent.address, { token: agent.token });
    const got: policyv1.Flow[] = [];
    const stream = peer.client.watchFlows({ objectId: db.objectId, verdicts: [policyv1.Verdict.VERDICT_VIOLATION] }, peer.traceMetadata());
    stream.on('data', (f: policyv1.Flow) => got.push(f));
    stream.on('error', () => undefined);
    try {
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(await reaches(other, db.ip!), true);
      const f = await waitFor('a streamed violation', () => got.find((x) => x.srcObjectId === other.objectId), 5_000);
      assert.equal(f.verdict, policyv1.Verdict.VERDICT_VIOLATION);
    } finally {
      stream.cancel();
      peer.close();
    }
    const bad = await bufCurl(agent.address, 'agent.v1.PolicyService/ListFlows', { limit: 10_001 }, { token: agent.token });
    assert.deepEqual([bad.error?.code, /limit/.test(bad.error?.message ?? '')], ['invalid_argument', true]);
  });

  it('discover: three flows become learned rules; after switching to Protect they still pass and a new client is blocked', async () => {
    const clients = await Promise.all(['c1', 'c2', 'c3'].map((app) => create(agent, `seg-${app}`, app, idle)));
    const groups = (mode: string): Array<[string, string, string]> => [['db', 'db', mode], ...['c1', 'c2', 'c3'].map((app): [string, string, string] => [app, app, mode])];
    await applyPolicy(agent, groups('MODE_DISCOVER'));
    for (const c of clients) assert.equal(await reaches(c, db.ip!), true, 'discover passes');
    const learned = await waitFor('three learned rules', async () => {
      const p = await bufCurl(agent.address, 'agent.v1.PolicyService/GetPolicy', {}, { token: agent.token });
      const rules = ((p.body.rules ?? []) as Array<{ id: string; from: string; to: string; ports: string[]; learned?: boolean }>).filter((r) => r.learned);
      return rules.length >= 3 ? rules : undefined;
    });
    assert.deepEqual(learned.map((r) => [r.from, r.to, r.ports]).sort(), [['c1', 'db', [`tcp/${PORT}`]], ['c2', 'db', [`tcp/${PORT}`]], ['c3', 'db', [`tcp/${PORT}`]]]);
    assert.ok(learned.every((r) => Number(r.id) >= 10_000));
    const flow = await flowSeen(agent, clients[0], db, 'VERDICT_LEARNED');
    assert.ok(learned.some((r) => r.id === flow.ruleId), 'the LEARNED flow names its rule');
    await applyPolicy(agent, groups('MODE_PROTECT'));
    for (const c of clients) assert.equal(await reaches(c, db.ip!), true, 'learned rules hold in Protect');
    assert.equal(await reaches(web, db.ip!), false, 'a client nothing was learned for is blocked');
    for (const c of clients) await api(agent, 'Delete', { objectId: c.objectId, wait: true });
  });

  it('quarantine: a live connection stops at once, both directions are blocked; lifting restores the policy', async () => {
    await applyPolicy(agent, []);
    const open = await create(agent, 'seg-q-open', 'q-open', server(7001));
    // A live connection from the host, echoed by db's cat.
    const sock = net.connect(PORT, db.ip!);
    let echoed = '';
    sock.on('data', (d) => (echoed += d.toString()));
    sock.on('error', () => undefined);
    try {
      await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
      sock.write('one\n');
      await waitFor('the echo', () => (echoed.includes('one') ? true : undefined), 3_000);
      const q = await bufCurl(agent.address, 'agent.v1.PolicyService/SetQuarantine', { objectId: db.objectId, quarantined: true }, { token: agent.token });
      assert.equal(q.ok, true, JSON.stringify(q.error));
      assert.deepEqual([q.body.quarantined, q.body.enforcement], [true, 'ENFORCEMENT_ENFORCED']);
      sock.write('two\n');
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal(echoed.includes('two'), false, 'the live connection is cut');
      assert.equal(await reaches(web, db.ip!), false, 'nothing gets in');
      const out = await sh('docker', ['exec', db.runtimeId, 'sh', '-c', `echo ping-out | nc -w 1 ${open.ip} 7001 2>/dev/null | head -c 64; true`]).catch(() => '');
      assert.equal(out.includes('ping-out'), false, 'nothing gets out');
      const lifted = await bufCurl(agent.address, 'agent.v1.PolicyService/SetQuarantine', { objectId: db.objectId, quarantined: false }, { token: agent.token });
      assert.equal(lifted.ok, true, JSON.stringify(lifted.error));
      assert.equal(await reaches(web, db.ip!), true, 'lifted: no policy stands in the way');
    } finally {
      sock.destroy();
    }
    const notContainer = await bufCurl(agent.address, 'agent.v1.PolicyService/SetQuarantine', { objectId: 'no-such-object', quarantined: true }, { token: agent.token });
    assert.equal(notContainer.error?.code, 'not_found');
    await api(agent, 'Delete', { objectId: open.objectId, wait: true });
  });

  it('established connections keep flowing through rule changes; a rule removed with revoke_established cuts what it allowed', async () => {
    const allow = (revoke: boolean): Record<string, unknown> => ({ id: 4, from: 'host', to: 'db', ports: [`tcp/${PORT}`], action: 'ACTION_ALLOW', revokeEstablished: revoke });
    const live = async (): Promise<{ says: (text: string) => Promise<boolean>; close: () => void }> => {
      const sock = net.connect(PORT, db.ip!);
      let echoed = '';
      sock.on('data', (d) => (echoed += d.toString()));
      sock.on('error', () => undefined);
      await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
      return {
        says: async (text) => {
          sock.write(`${text}\n`);
          return waitFor(`echo of ${text}`, () => (echoed.includes(text) ? true : undefined), 1_000).catch(() => false);
        },
        close: () => sock.destroy(),
      };
    };
    await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT']], [allow(false)]);
    const kept = await live();
    try {
      assert.equal(await kept.says('a1'), true);
      await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT']], []);
      assert.equal(await kept.says('a2'), true, 'removed without revoke: the established connection goes on');
      assert.equal(await hostReaches(db.ip!), false, 'but no new one');
    } finally {
      kept.close();
    }
    await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT']], [allow(true)]);
    const revoked = await live();
    try {
      assert.equal(await revoked.says('b1'), true);
      await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT']], []);
      assert.equal(await revoked.says('b2'), false, 'removed with revoke_established: cut');
    } finally {
      revoked.close();
    }
  });

  it('a container started outside the agent is discovered and enforced at once (its start event to enforced, in ms, is logged)', async () => {
    await applyPolicy(agent, [['db', 'db', 'MODE_PROTECT'], ['web', 'web', 'MODE_PROTECT']], [{ id: 1, from: 'web', to: 'db', ports: [`tcp/${PORT}`], action: 'ACTION_ALLOW' }]);
    const name = `seg-outside-${process.pid}`;
    const id = (await sh('docker', ['run', '-d', '--name', name, '--label', 'app=db', '--label', OUTSIDE, BUSYBOX, 'nc', '-ll', '-p', String(PORT), '-e', '/bin/cat'])).trim();
    try {
      const o = await waitFor('discovered and enforced', async () => {
        const list = ((await api(agent, 'List', { labels: { app: 'db' } })).body.objects ?? []) as Array<Obj & { origin?: string; updatedAt: string }>;
        return list.find((x) => x.runtimeId === id && x.enforcement === 'ENFORCEMENT_ENFORCED');
      });
      assert.equal(o.origin, 'ORIGIN_DISCOVERED');
      const started = Date.parse(JSON.parse(await sh('docker', ['inspect', '-f', '{{json .State.StartedAt}}', id])) as string);
      const ms = Date.parse(o.updatedAt) - started;
      process.stderr.write(`discovered container: started -> enforced (recorded) ${ms} ms\n`);
      // The figure is the bench's to judge; this catches a path that waits for a timer (a pull, a retry) instead of the start event.
      assert.ok(ms < 1_000, `enforced ${ms} ms after its start`);
      assert.equal(await reaches(web, o.ip!), true, 'rule 1 covers it');
      assert.equal(await reaches(other, o.ip!), false, 'the policy holds for it');
    } finally {
      await sh('docker', ['rm', '-f', id]);
    }
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
    agent = await startAgent(ENV, agent);
    await waitFor('db enforced again', async () => ((await get(agent, db.objectId)).enforcement === 'ENFORCEMENT_ENFORCED' ? true : undefined));
    assert.equal(ruleset(), before, 'the same rule set: nothing added twice, nothing lost');
    assert.equal(await reaches(other, db.ip!), false);
  });

  it('SIGTERM leaves enforcement in place; deleting every member removes everything the agent added', async () => {
    await agent.stop('SIGTERM');
    assert.equal(tableExists(), true, 'a clean stop leaves the kernel enforcing');
    agent = await startAgent(ENV, agent);
    for (const o of [db, web, other]) assert.equal((await api(agent, 'Delete', { objectId: o.objectId, wait: true })).ok, true);
    await waitFor('the table is gone', () => (tableExists() ? undefined : true));
  });
});
