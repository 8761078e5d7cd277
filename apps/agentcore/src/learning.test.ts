// Discover's learned rules on a real embedded store: what a connection
// becomes, what a policy keeps of it, and what the fleet shares.
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Logger } from '@agent/grpc-kit';
import { Module } from '@agent/option';
import { policyv1 } from '@agent/proto';
import { Keys, openStore } from '@agent/store';
import { LearnedRules, ruleFor } from './learning';
import { Records } from './records';

const { Mode, Verdict } = policyv1;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-learning-'));
const log = new Logger(Module.AgentCore, 'error');

const flow = (f: Partial<policyv1.Flow>): policyv1.Flow => policyv1.Flow.fromPartial({ protocol: 'tcp', dstPort: 5432, verdict: Verdict.VERDICT_LEARNED, srcIp: '172.17.0.5', dstIp: '172.17.0.6', ...f });
const policy = (groups: string[]): policyv1.Policy => policyv1.Policy.fromPartial({ revision: 1, groups: groups.map((name) => ({ name, selector: { app: name }, mode: Mode.MODE_DISCOVER })) });

describe('learned rules', () => {
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a connection becomes an allow rule between the groups of its ends; an end in no group is its address', () => {
    const r = ruleFor(flow({ srcGroup: 'web', dstGroup: 'db' }))!;
    assert.deepEqual([r.from, r.to, r.ports, r.action, r.learned], ['web', 'db', ['tcp/5432'], policyv1.Action.ACTION_ALLOW, true]);
    assert.ok(r.id >= 10_000 && r.id <= 4_294_967_294);
    assert.equal(ruleFor(flow({ srcGroup: 'web', dstGroup: 'db' }))!.id, r.id, 'the same connection, the same id (on any agent)');
    assert.notEqual(ruleFor(flow({ srcGroup: 'web', dstGroup: 'db', dstPort: 5433 }))!.id, r.id);
    assert.deepEqual([ruleFor(flow({ srcGroup: '', dstGroup: 'db' }))!.from, ruleFor(flow({ srcGroup: 'host', dstGroup: 'db' }))!.from], ['172.17.0.5/32', 'host']);
    assert.equal(ruleFor(flow({ protocol: 'icmp', dstPort: 0, srcGroup: 'web', dstGroup: 'db' })), undefined, 'no port: not learned');
  });

  it('recorded under this host, kept across policies that keep their groups, shared with the fleet', async () => {
    const store = await openStore({ clusterUrl: '', dataDir: dir, hostId: 'h1' });
    try {
      const mine = new LearnedRules(new Records(store, 'h1', log), 'h1', log);
      const ids = await mine.learn([flow({ srcGroup: 'web', dstGroup: 'db' }), flow({ srcGroup: 'web', dstGroup: 'db' }), flow({ protocol: 'icmp', dstPort: 0 })], policy(['web', 'db']));
      assert.equal(ids[0], ids[1]);
      assert.equal(ids[2], 0);
      const stored = JSON.parse((await store.get(Keys.learned('h1')))!) as unknown[];
      assert.equal(stored.length, 1, 'one rule for two flows of one kind');
      assert.equal(mine.effective(policy(['web', 'db'])).length, 1);
      assert.equal(mine.effective(policy(['web'])).length, 0, 'a rule whose group is gone does not apply');
      // Another agent reads what h1 learned through the store.
      const other = new LearnedRules(new Records(store, 'h2', log), 'h2', log);
      assert.equal(other.changed('h1', await store.get(Keys.learned('h1'))), true);
      assert.equal(other.changed('h1', await store.get(Keys.learned('h1'))), false, 'the same again is no change');
      assert.deepEqual(other.effective(policy(['web', 'db'])).map((r) => r.id), [ids[0]]);
      // A policy rule with the same id wins; a damaged value counts as nothing.
      const p = policy(['web', 'db']);
      p.rules.push(policyv1.Rule.fromPartial({ id: ids[0], from: 'web', to: 'db', ports: ['tcp/5432'], action: policyv1.Action.ACTION_ALLOW, learned: true }));
      assert.equal(other.effective(p).length, 0);
      assert.equal(other.changed('h1', 'not json'), true);
      assert.equal(other.effective(policy(['web', 'db'])).length, 0);
    } finally {
      await store.close();
    }
  });
});
