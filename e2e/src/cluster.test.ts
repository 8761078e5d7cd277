// Two agents, one real nats-server (JetStream KV): each keeps its workloads
// and host record in the shared store, config changes apply live, and a
// killed agent's records are marked stale, not deleted.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { connect } from '@agent/grpc-kit';
import { policyv1 } from '@agent/proto';
import { NatsStore } from '@agent/store';
import { api, bufCurl, startAgent, startNats, waitFor, type Agent } from '@agent/testkit';

const FAST = { AGENT_HEARTBEAT_MS: '300', AGENT_CLEANUP_MS: '500', AGENT_POLICY_PULL_MS: '500' };

describe('two agents sharing one NATS JetStream store', () => {
  let nats: Awaited<ReturnType<typeof startNats>>;
  let store: NatsStore;
  let a: Agent;
  let b: Agent;
  const made: Array<[Agent, string]> = [];

  before(async () => {
    nats = await startNats();
    a = await startAgent({ ...FAST, AGENT_CLUSTER_URL: nats.url });
    b = await startAgent({ ...FAST, AGENT_CLUSTER_URL: nats.url });
    store = await NatsStore.open(nats.url);
  });
  after(async () => {
    for (const [agent, id] of made) await api(agent, 'Delete', { object_id: id, wait: true }).catch(() => undefined);
    await a?.stop();
    await b?.stop();
    await store?.close();
    await nats?.stop();
  });

  it("puts each agent's workloads and host record in the store", async () => {
    for (const agent of [a, b]) {
      const ack = await api(agent, 'Create', { spec: { name: 'shared', kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] } }, wait: true });
      assert.equal(ack.body.state, 'STATE_RUNNING');
      made.push([agent, ack.body.objectId]);
      const rec = await waitFor('workload record', async () => {
        const v = await store.get(`workloads.${agent.hostId}.${ack.body.objectId}`);
        return v ? (JSON.parse(v) as { object: { state: string } }) : undefined;
      });
      assert.equal(rec.object.state, 'STATE_RUNNING');
      const host = JSON.parse((await store.get(`hosts.${agent.hostId}`))!) as { stale: boolean };
      assert.equal(host.stale, false);
    }
    assert.equal((await store.list(`workloads.${a.hostId}.`)).length, 1);
    assert.equal((await store.list(`workloads.${b.hostId}.`)).length, 1);
  });

  it('a policy applied on one agent is the policy of both (config.network), and the revision only goes up fleet-wide', async () => {
    const policy = (revision: number): object => ({ revision, groups: [{ name: 'web', selector: { app: 'web' }, mode: 'MODE_PROTECT' }], rules: [{ id: 1, from: 'any', to: 'web', ports: ['tcp/80'], action: 'ACTION_ALLOW' }] });
    const applied = await bufCurl(a.address, 'agent.v1.PolicyService/ApplyPolicy', policy(7), { token: a.token });
    assert.equal(applied.ok, true, JSON.stringify(applied.error));
    const seen = await bufCurl(b.address, 'agent.v1.PolicyService/GetPolicy', {}, { token: b.token });
    assert.equal(Number(seen.body.revision), 7);
    await waitFor('b applied revision 7', () => b.logs.find((l) => l.msg === 'network policy applied' && Number(l.revision) === 7), 2_000, 20);
    const stale = await bufCurl(b.address, 'agent.v1.PolicyService/ApplyPolicy', policy(7), { token: b.token });
    assert.equal(stale.error?.code, 'failed_precondition');
  });

  it('the same revision applied on both agents at once: exactly one succeeds, the other is FAILED_PRECONDITION (5 rounds)', async () => {
    const policy = (revision: number, rule: number): object => ({ revision, groups: [{ name: 'web', selector: { app: 'web' }, mode: 'MODE_PROTECT' }], rules: [{ id: rule, from: 'any', to: 'web', ports: ['tcp/80'], action: 'ACTION_ALLOW' }] });
    // Clients connected beforehand, both calls sent in one turn: they meet in the store within a millisecond or so.
    const clients = [a, b].map((x) => connect(policyv1.PolicyServiceClient, x.address, { token: x.token }));
    await Promise.all(clients.map((c) => c.call('getPolicy', {})));
    for (let revision = 8; revision < 13; revision++) {
      const both = await Promise.all(clients.map((c, i) => c.call('applyPolicy', policyv1.Policy.fromJSON(policy(revision, i + 1))).then(() => 'ok', (err: Error) => err.name)));
      assert.deepEqual([...both].sort(), ['FailedPreconditionError', 'ok'], `revision ${revision}: ${JSON.stringify(both)}`);
      // What both read back is the winner's.
      const winner = both.indexOf('ok') + 1;
      for (const x of [a, b]) {
        const got = await bufCurl(x.address, 'agent.v1.PolicyService/GetPolicy', {}, { token: x.token });
        assert.deepEqual([Number(got.body.revision), Number(got.body.rules[0].id)], [revision, winner]);
      }
    }
    for (const c of clients) c.close();
  });

  it('a change to config.agents.<host> changes that agent within 1 s, and only that one', async () => {
    const t0 = Date.now();
    await store.put(`config.agents.${a.hostId}`, JSON.stringify({ logLevel: 'debug', collectBaseMs: 2000 }));
    await waitFor('config applied', () => a.logs.find((l) => l.msg === 'agent config applied' && l.logLevel === 'debug'), 1_000, 20);
    await waitFor('collector base interval', () => a.logs.find((l) => l.msg === 'collect base interval changed' && l.baseIntervalMs === 2000), 1_000, 20);
    assert.ok(Date.now() - t0 < 1_500);
    // Debug logging is on in a, not in b.
    await api(a, 'Get', { object_id: 'obj-none' });
    await api(b, 'Get', { object_id: 'obj-none' });
    await waitFor('debug line in a', () => a.logs.find((l) => l.level === 'debug' && l.msg === 'call failed'), 1_000, 20);
    assert.equal(b.logs.some((l) => l.level === 'debug'), false);
  });

  it('the network policy is watched and pulled', async () => {
    await store.put('config.network', JSON.stringify({ revision: 'r1', rules: [] }));
    await waitFor('policy applied in both', () => [a, b].every((x) => x.logs.some((l) => l.msg === 'network policy applied' && l.revision === 'r1')) || undefined, 2_000, 20);
  });

  it("a killed agent's records are marked stale, not deleted; they come back with it", async () => {
    await b.stop('SIGKILL');
    const host = await waitFor('b stale', async () => {
      const h = JSON.parse((await store.get(`hosts.${b.hostId}`)) ?? '{}') as { stale?: boolean };
      return h.stale ? h : undefined;
    }, 5_000, 100);
    assert.equal(host.stale, true);
    assert.equal((await store.list(`workloads.${b.hostId}.`)).length, 1, 'records kept');
    b = await startAgent({ ...FAST, AGENT_CLUSTER_URL: nats.url }, b);
    const list = (await api(b, 'List', {})).body.objects as Array<{ objectId: string; state: string }>;
    assert.equal(list.length, 1);
    assert.equal(list[0]!.state, 'STATE_RUNNING', 'taken back from the cluster store');
    await waitFor('b fresh', async () => ((JSON.parse((await store.get(`hosts.${b.hostId}`)) ?? '{}') as { stale?: boolean }).stale === false ? true : undefined));
  });
});
