// The policy contract (agent.v1.PolicyService) on the real daemon: a policy is
// validated field by field, its revision only goes up, it is kept in the
// store across a restart, readers may read it and not change it, and grpcurl
// users find the service by reflection. (Enforcement is not in this file.)
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { bufCurl, startAgent, type Agent } from '@agent/testkit';

const policy = (revision: number, over: Record<string, unknown> = {}): Record<string, unknown> => ({
  revision,
  groups: [
    { name: 'web', selector: { app: 'web' }, mode: 'MODE_PROTECT' },
    { name: 'db', selector: { app: 'db' }, mode: 'MODE_MONITOR' },
  ],
  rules: [
    { id: 1, from: 'web', to: 'db', ports: ['tcp/5432'], action: 'ACTION_ALLOW' },
    { id: 2, from: 'any', to: 'web', ports: ['tcp/80', 'tcp/8000-8100'], action: 'ACTION_ALLOW' },
    { id: 3, from: '10.0.0.0/8', to: 'db', ports: ['any'], action: 'ACTION_DENY' },
    { id: 10001, from: 'web', to: 'host', ports: ['udp/53'], action: 'ACTION_ALLOW', learned: true },
  ],
  ...over,
});

const call = (agent: Agent, method: string, body: unknown, token = agent.token) => bufCurl(agent.address, `agent.v1.PolicyService/${method}`, body, { token });

describe('PolicyService', () => {
  let agent: Agent;
  before(async () => (agent = await startAgent()));
  after(async () => agent?.stop());

  it('starts empty, applies a policy, and gives it back', async () => {
    const empty = await call(agent, 'GetPolicy', {});
    assert.equal(empty.ok, true, JSON.stringify(empty.error));
    assert.equal(Number(empty.body.revision ?? 0), 0);
    const st = await call(agent, 'ApplyPolicy', policy(1));
    assert.equal(st.ok, true, JSON.stringify(st.error));
    assert.deepEqual([Number(st.body.revision), st.body.groups, st.body.rules], [1, 2, 4]);
    const got = await call(agent, 'GetPolicy', {});
    assert.equal(Number(got.body.revision), 1);
    assert.deepEqual((got.body.groups as Array<{ name: string }>).map((g) => g.name), ['web', 'db']);
    assert.deepEqual((got.body.rules as Array<{ ports: string[] }>)[1]!.ports, ['tcp/80', 'tcp/8000-8100']);
  });

  it('refuses a revision that is not greater with FAILED_PRECONDITION, keeping the current one', async () => {
    const r = await call(agent, 'ApplyPolicy', policy(1, { groups: [], rules: [] }));
    assert.equal(r.error?.code, 'failed_precondition', JSON.stringify(r));
    assert.match(r.error?.message ?? '', /^revision: 1 is not greater than the current 1/);
    assert.equal((await call(agent, 'GetPolicy', {})).body.groups.length, 2);
  });

  const bad: Array<[string, Record<string, unknown>, string]> = [
    ['no revision', { revision: 0 }, 'revision'],
    ['a rule naming an unknown group', { rules: [{ id: 1, from: 'web', to: 'cache', ports: ['tcp/6379'], action: 'ACTION_ALLOW' }] }, 'rules[0].to'],
    ['a bad port', { rules: [{ id: 1, from: 'web', to: 'db', ports: ['tcp/70000'], action: 'ACTION_ALLOW' }] }, 'rules[0].ports[0]'],
    ['a port range upside down', { rules: [{ id: 1, from: 'web', to: 'db', ports: ['tcp/90-80'], action: 'ACTION_ALLOW' }] }, 'rules[0].ports[0]'],
    ['a port without protocol', { rules: [{ id: 1, from: 'web', to: 'db', ports: ['5432'], action: 'ACTION_ALLOW' }] }, 'rules[0].ports[0]'],
    ['a bad CIDR', { rules: [{ id: 1, from: '10.0.0.0/33', to: 'db', ports: [], action: 'ACTION_ALLOW' }] }, 'rules[0].from'],
    ['duplicate group names', { groups: [{ name: 'web', selector: { a: 'b' }, mode: 'MODE_PROTECT' }, { name: 'web', selector: { c: 'd' }, mode: 'MODE_MONITOR' }], rules: [] }, 'groups[1].name'],
    ['duplicate rule ids', { rules: [{ id: 7, from: 'web', to: 'db', action: 'ACTION_ALLOW' }, { id: 7, from: 'db', to: 'web', action: 'ACTION_DENY' }] }, 'rules[1].id'],
    ['a user rule in the learned range', { rules: [{ id: 10000, from: 'web', to: 'db', action: 'ACTION_ALLOW' }] }, 'rules[0].id'],
    ['a group without a mode', { groups: [{ name: 'web', selector: { app: 'web' } }], rules: [] }, 'groups[0].mode'],
    ['a group that would take every container', { groups: [{ name: 'all', selector: {}, mode: 'MODE_PROTECT' }], rules: [] }, 'groups[0].selector'],
    ['a group named like a reserved peer', { groups: [{ name: 'host', selector: { a: 'b' }, mode: 'MODE_PROTECT' }], rules: [] }, 'groups[0].name'],
    ['a rule without an action', { rules: [{ id: 1, from: 'web', to: 'db' }] }, 'rules[0].action'],
    ['a revision beyond 2^53-1', { revision: '9223372036854775807' }, 'revision'],
  ];
  for (const [name, over, field] of bad) {
    it(`${name} -> INVALID_ARGUMENT naming ${field}`, async () => {
      const r = await call(agent, 'ApplyPolicy', policy(100, over));
      assert.equal(r.error?.code, 'invalid_argument', JSON.stringify(r));
      assert.ok(r.error?.message.startsWith(`${field}: `), r.error?.message);
    });
  }

  it('readers may read the policy, not change it; without a token nobody does either', async () => {
    assert.equal((await call(agent, 'GetPolicy', {}, agent.readerToken)).ok, true);
    assert.equal((await call(agent, 'ApplyPolicy', policy(5), agent.readerToken)).error?.code, 'permission_denied');
    assert.equal((await call(agent, 'GetPolicy', {}, '')).error?.code, 'unauthenticated');
    assert.equal(Number((await call(agent, 'GetPolicy', {})).body.revision), 1, 'nothing changed');
  });

  it('is kept across a restart (SIGKILL), and the next revision goes on from it', async () => {
    assert.equal(await agent.stop('SIGKILL'), null);
    agent = await startAgent({}, agent);
    assert.equal(Number((await call(agent, 'GetPolicy', {})).body.revision), 1);
    assert.equal((await call(agent, 'ApplyPolicy', policy(1))).error?.code, 'failed_precondition');
    assert.equal((await call(agent, 'ApplyPolicy', policy(2))).ok, true);
  });
});
