// A policy change through the whole agent: ApplyPolicy on the public API
// (validated by the apiserver, stored, reconciled by agentcore, programmed by
// the manager's driver) until it answers, which it does once the kernel
// enforces it. Real containers as members (two: the member count is the
// driver bench's concern), the 1,000-rule policy of network-bench.ts. Beside
// it, the target; the driver's own figure is in the same run's policy_change.
import { spawnSync } from 'node:child_process';
import { connect } from '@agent/grpc-kit';
import { policyv1, v1 } from '@agent/proto';
import { apiClient, BUSYBOX, startAgent } from '@agent/testkit';
import type { StoreBenchKit } from './store-bench';

const TABLE = 'agent_bench_apply';
const GROUPS = 20;
const group = (g: number): string => `g${String(g).padStart(2, '0')}`;

function policy(revision: number, rules: number, change: number): policyv1.Policy {
  const groups = Array.from({ length: GROUPS }, (_, g) => ({ name: group(g), selector: { 'bench.group': group(g) }, mode: policyv1.Mode.MODE_PROTECT }));
  // Each revision: the rules of the one before, one port changed (and so one nft rule replaced), one rule more.
  const out = Array.from({ length: rules + change }, (_, k) => ({
    id: k + 1,
    from: group(k % GROUPS),
    to: group((k * 7 + 3) % GROUPS),
    ports: [`tcp/${k === change % rules ? 20_000 + change : 10_000 + k}`],
    action: policyv1.Action.ACTION_ALLOW,
  }));
  return policyv1.Policy.fromPartial({ revision, groups, rules: out });
}

export async function policyApplyCase(kit: StoreBenchKit, opts: { quick: boolean }): Promise<void> {
  const { record, log, pct } = kit;
  const changes = opts.quick ? 15 : 50;
  const rules = 1_000;
  log(`network: ${changes} ApplyPolicy calls of ${rules} rules through the agent (table inet ${TABLE})`);
  const agent = await startAgent({ AGENT_NFT_TABLE: TABLE, AGENT_NFLOG_GROUP: '4802' });
  const api = apiClient(agent.address, agent.token);
  const peer = connect(policyv1.PolicyServiceClient, agent.address, { token: agent.token });
  const made: string[] = [];
  try {
    for (let g = 0; g < 2; g++) {
      const spec = v1.ObjectSpec.fromPartial({ name: `bench-apply-${g}`, kind: v1.Kind.KIND_CONTAINER, labels: { 'bench.group': group(g) }, container: { image: BUSYBOX, command: ['sleep', '600'] } });
      made.push((await api.call('create', v1.CreateRequest.fromPartial({ spec, wait: true }), { timeoutMs: 60_000 })).objectId);
    }
    const took: number[] = [];
    for (let c = 0; c < changes + 2; c++) {
      const p = policy(c + 1, rules, c);
      const t0 = kit.nowMs();
      await peer.call('applyPolicy', p, { timeoutMs: 30_000 });
      if (c >= 2) took.push(kit.nowMs() - t0);
    }
    const note = `${changes} revisions of ${rules}+ rules over ${GROUPS} groups, 2 container members; each: 1 rule's port changed, 1 rule added; until ApplyPolicy answers (enforced)`;
    for (const p of [50, 99]) record({ case: 'policy_apply_through_agent', metric: `p${p}_until_enforced`, unit: 'ms', agent: pct(took, p), agent_name: 'ApplyPolicy (grpc-js client)', peer: 100, peer_name: 'target (100 ms)', note }, 'lower');
  } finally {
    // The last member deleted takes the table with it; a failed run's table goes by hand.
    for (const objectId of made) await api.call('delete', v1.DeleteRequest.fromPartial({ objectId, wait: true }), { timeoutMs: 60_000 }).catch(() => undefined);
    peer.close();
    api.close();
    await agent.stop();
    spawnSync('nft', ['delete', 'table', 'inet', TABLE], { stdio: 'ignore' });
  }
}
