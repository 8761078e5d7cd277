// A fleet of two agents on one real nats-server, each with real containers and
// a dataplane of its own (its own nftables table, as on two hosts): a policy
// applied on either is enforced by both at the same revision, what one learns
// in Discover the other applies, and flows reach the cluster's JetStream stream.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connectNats } from '@agent/store';
import { BUSYBOX, api, bufCurl, sh, startAgent, startNats, waitFor, type Agent } from '@agent/testkit';

const PORT = 5432;
type Obj = { objectId: string; runtimeId: string; ip?: string; enforcement?: string; policyRevision?: string };

const tables = [`agent_fleet_a_${process.pid}`, `agent_fleet_b_${process.pid}`];
const groupOf = (i: number): string => String(1000 + ((process.pid + 13 + i) % 60_000));

async function create(agent: Agent, name: string, app: string, command: string[]): Promise<Obj> {
  const r = await api(agent, 'Create', { spec: { name, kind: 'KIND_CONTAINER', labels: { app }, container: { image: BUSYBOX, command } }, wait: true });
  assert.equal(r.body?.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(r.body ?? r.error));
  return get(agent, r.body.objectId as string);
}

const get = async (agent: Agent, objectId: string): Promise<Obj> => (await api(agent, 'Get', { objectId })).body as Obj;

async function reaches(client: Obj, ip: string): Promise<boolean> {
  const out = await sh('docker', ['exec', client.runtimeId, 'sh', '-c', `echo ping-$$ | nc -w 1 ${ip} ${PORT} 2>/dev/null | head -c 64; true`]).catch(() => '');
  return out.includes('ping-');
}

async function applyOn(agent: Agent, revision: number, mode: string, rules: Array<Record<string, unknown>> = []): Promise<void> {
  const groups = ['db', 'web', 'c'].map((name) => ({ name, selector: { app: name }, mode }));
  const r = await bufCurl(agent.address, 'agent.v1.PolicyService/ApplyPolicy', { revision, groups, rules }, { token: agent.token });
  assert.equal(r.ok, true, JSON.stringify(r.error));
}

/** Both agents' db objects enforce this revision. */
const enforcedEverywhere = (agents: Agent[], dbs: Obj[], revision: number): Promise<boolean> =>
  waitFor(`revision ${revision} enforced by both`, async () => {
    const os = await Promise.all(agents.map((a, i) => get(a, dbs[i]!.objectId)));
    return os.every((o) => o.enforcement === 'ENFORCEMENT_ENFORCED' && Number(o.policyRevision) === revision) ? true : undefined;
  });

describe('a fleet of two agents on one nats-server (real Docker, real nftables)', () => {
  let nats: Awaited<ReturnType<typeof startNats>>;
  const agents: Agent[] = [];
  const dbs: Obj[] = [];
  const webs: Obj[] = [];
  const cs: Obj[] = [];

  before(async () => {
    nats = await startNats();
    for (let i = 0; i < 2; i++) {
      const agent = await startAgent({ AGENT_CLUSTER_URL: nats.url, AGENT_DISCOVER: 'off', AGENT_POLICY_PULL_MS: '500', AGENT_NFT_TABLE: tables[i]!, AGENT_NFLOG_GROUP: groupOf(i) });
      agents.push(agent);
      dbs.push(await create(agent, `fleet-db-${i}`, 'db', ['nc', '-ll', '-p', String(PORT), '-e', '/bin/cat']));
      webs.push(await create(agent, `fleet-web-${i}`, 'web', ['sleep', '3600']));
      cs.push(await create(agent, `fleet-c-${i}`, 'c', ['sleep', '3600']));
    }
  });
  after(async () => {
    for (const a of agents) await a.stop();
    for (const t of tables) if (execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).includes(`inet ${t}`)) execFileSync('nft', ['delete', 'table', 'inet', t]);
    for (const a of agents) await sh('sh', ['-c', `docker ps -aq --filter label=io.agent.host-id=${a.hostId} | xargs -r docker rm -f`]).catch(() => undefined);
    await nats?.stop();
  });

  it('a policy applied on one agent is enforced by both at the same revision', async () => {
    const [a, b] = agents as [Agent, Agent];
    await applyOn(a, 1, 'MODE_PROTECT', [{ id: 1, from: 'web', to: 'db', ports: [`tcp/${PORT}`], action: 'ACTION_ALLOW' }]);
    await enforcedEverywhere(agents, dbs, 1);
    for (let i = 0; i < 2; i++) {
      assert.equal(await reaches(webs[i]!, dbs[i]!.ip!), true, `web -> db on agent ${i}`);
      assert.equal(await reaches(cs[i]!, dbs[i]!.ip!), false, `c -> db blocked on agent ${i}`);
    }
    // The other way round: applied on b, enforced on a.
    await applyOn(b, 2, 'MODE_PROTECT');
    await enforcedEverywhere(agents, dbs, 2);
    assert.equal(await reaches(webs[0]!, dbs[0]!.ip!), false, 'rule 1 is gone on a too');
  });

  it('what one agent learns in Discover the other applies; flows reach the JetStream stream', async () => {
    const [a, b] = agents as [Agent, Agent];
    await applyOn(a, 3, 'MODE_DISCOVER');
    await enforcedEverywhere(agents, dbs, 3);
    assert.equal(await reaches(cs[0]!, dbs[0]!.ip!), true, 'discover passes on a');
    // b has seen no such connection, yet its policy shows the rule a learned.
    const learned = await waitFor('b applies what a learned', async () => {
      const p = await bufCurl(b.address, 'agent.v1.PolicyService/GetPolicy', {}, { token: b.token });
      return ((p.body.rules ?? []) as Array<{ from: string; to: string; ports: string[]; learned?: boolean }>).find((r) => r.learned && r.from === 'c' && r.to === 'db');
    });
    assert.deepEqual(learned.ports, [`tcp/${PORT}`]);
    await applyOn(b, 4, 'MODE_PROTECT');
    await enforcedEverywhere(agents, dbs, 4);
    assert.equal(await reaches(cs[1]!, dbs[1]!.ip!), true, 'on b, c -> db passes by the rule a learned');
    assert.equal(await reaches(webs[1]!, dbs[1]!.ip!), false, 'on b, nothing else was learned for db');

    const nc = await connectNats(nats.url, 'fleet-test');
    try {
      const jsm = await nc.jetstreamManager();
      const info = await waitFor('flows in AGENT_FLOWS', async () => {
        const s = await jsm.streams.info('AGENT_FLOWS').catch(() => undefined);
        return s && s.state.messages > 0 ? s : undefined;
      });
      assert.ok(info.state.messages > 0);
      const msg = await jsm.streams.getMessage('AGENT_FLOWS', { last_by_subj: `agent.flows.${a.hostId.replace(/[^A-Za-z0-9_-]/g, '_')}` });
      const flow = JSON.parse(new TextDecoder().decode(msg.data)) as { hostId: string; verdict: string };
      assert.equal(flow.hostId, a.hostId);
    } finally {
      await nc.close();
    }
  });
});
