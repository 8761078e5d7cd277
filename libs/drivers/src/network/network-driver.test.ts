// The network driver on the real kernel: a table of the test's own, in the
// host namespace, whose members are loopback addresses (127.0.0.x), so the
// host's own traffic to them crosses the output hook the way host-to-container
// traffic does.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as net from 'node:net';
import { tcpConnects } from '@agent/testkit';
import { NetworkDriver } from './network-driver';
import { macFor } from './address';
import type { Endpoint, NetRule, NetworkState } from './types';

const TABLE = `agent_test_${process.pid}`;
const LOG_GROUP = 4712;
const WEB = '127.0.0.71';
const DB = '127.0.0.72';
const PORT = 47_123;

const nftList = (): string => execFileSync('nft', ['list', 'table', 'inet', TABLE], { encoding: 'utf8' });
const tableExists = (): boolean => execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).includes(`inet ${TABLE}`);

function endpoint(objectId: string, ip: string, groups: string[], mode: Endpoint['mode'] = 'protect'): Endpoint {
  return { objectId, ip, groups, mode, pending: false, quarantined: false };
}

function state(rules: NetRule[], endpoints: Endpoint[] = [endpoint('obj-web', WEB, ['web']), endpoint('obj-db', DB, ['db'])]): NetworkState {
  return { endpoints, groups: ['web', 'db'], rules };
}

const allowHostToDb: NetRule = { id: 7, from: 'host', to: 'db', ports: [`tcp/${PORT}`], action: 'allow' };

/**
 * Whether a TCP connect from the host to ip:PORT completes. From 127.0.0.1:
 * on loopback the kernel would otherwise pick the member's own address as the
 * source, which no container traffic does.
 */
const connects = (ip: string): Promise<boolean> => tcpConnects(ip, PORT, { ms: 400, localAddress: '127.0.0.1' });

describe('NetworkDriver (real nftables)', () => {
  const servers: net.Server[] = [];
  const driver = new NetworkDriver({ table: TABLE, logGroup: LOG_GROUP });

  before(async () => {
    for (const ip of [WEB, DB]) {
      const s = net.createServer((c) => c.end());
      await new Promise<void>((r) => s.listen(PORT, ip, r));
      servers.push(s);
    }
  });
  after(() => {
    for (const s of servers) s.close();
    if (tableExists()) execFileSync('nft', ['delete', 'table', 'inet', TABLE]);
  });

  it('with nothing segmented, has no table', async () => {
    const r = await driver.program({ endpoints: [], groups: [], rules: [] });
    assert.deepEqual(r, { changes: 0, present: false });
    assert.equal(tableExists(), false);
  });

  it('protect: the host reaches a protected member only on what a rule allows; the same state again changes nothing', async () => {
    assert.equal(await connects(DB), true, 'reachable before any policy');
    const first = await driver.program(state([]));
    assert.ok(first.changes > 0);
    assert.equal(await connects(DB), false, 'no rule: dropped');
    await driver.program(state([allowHostToDb]));
    assert.equal(await connects(DB), true, 'allowed by rule 7');
    assert.equal(await connects(WEB), false, 'rule 7 is for db only');
    assert.equal((await driver.program(state([allowHostToDb]))).changes, 0);
  });

  it('a rule for another port does not let it through', async () => {
    await driver.program(state([{ ...allowHostToDb, ports: [`tcp/${PORT + 1}`, 'udp/53'] }]));
    assert.equal(await connects(DB), false);
  });

  it('deny wins over allow', async () => {
    await driver.program(state([allowHostToDb, { id: 8, from: 'any', to: 'db', ports: ['any'], action: 'deny' }]));
    assert.equal(await connects(DB), false);
  });

  it('monitor passes what no rule covers; discover too', async () => {
    await driver.program(state([], [endpoint('obj-web', WEB, ['web'], 'monitor'), endpoint('obj-db', DB, ['db'], 'discover')]));
    assert.equal(await connects(WEB), true);
    assert.equal(await connects(DB), true);
  });

  it('counts hits per rule id from the kernel counters', async () => {
    await driver.program(state([allowHostToDb]));
    const before = (await driver.ruleHits()).get(7) ?? 0;
    for (let i = 0; i < 3; i++) assert.equal(await connects(DB), true);
    assert.equal(((await driver.ruleHits()).get(7) ?? 0) - before, 3);
  });

  it('a membership change is set elements only: the rules keep their handles', async () => {
    await driver.program(state([allowHostToDb]));
    const handles = (): string[] => nftList().split('\n').filter((l) => l.includes('comment "r7:')).map((l) => l.trim());
    const was = handles();
    const r = await driver.program(state([allowHostToDb], [endpoint('obj-web', WEB, ['web', 'db']), endpoint('obj-db', DB, ['db'])]));
    assert.ok(r.changes > 0 && r.changes <= 4, `changes: ${r.changes}`);
    assert.deepEqual(handles(), was);
    assert.equal(await connects(WEB), true, 'web is in db now');
  });

  it('a restarted driver reconciles the same table without duplicates', async () => {
    const s = state([allowHostToDb, { id: 9, from: 'web', to: 'db', ports: ['tcp/5432', 'udp/53'], action: 'allow' }]);
    await driver.program(s);
    const listed = nftList();
    const again = new NetworkDriver({ table: TABLE, logGroup: LOG_GROUP });
    assert.equal((await again.program(s)).changes, 0);
    assert.equal(nftList(), listed);
    // A rule removed behind the agent's back comes back on the next program of a fresh read.
    const line = nftList().split('\n').find((l) => l.includes('comment "r7:'))!;
    assert.ok(line);
    const handle = execFileSync('nft', ['-a', 'list', 'chain', 'inet', TABLE, 'allow_out'], { encoding: 'utf8' }).match(/comment "r7:[0-9a-f]+" # handle (\d+)/)![1]!;
    execFileSync('nft', ['delete', 'rule', 'inet', TABLE, 'allow_out', 'handle', handle]);
    const fresh = new NetworkDriver({ table: TABLE, logGroup: LOG_GROUP });
    assert.equal((await fresh.program(s)).changes, 1);
    assert.equal(await connects(DB), true);
  });

  it('a pending workload is held by its MAC; nothing left after the last member goes', async () => {
    const mac = macFor('obj-new');
    assert.match(mac, /^02(:[0-9a-f]{2}){5}$/);
    await driver.program(state([], [{ objectId: 'obj-new', mac, groups: ['web'], mode: 'protect', pending: true, quarantined: false }]));
    assert.match(nftList(), new RegExp(mac));
    const r = await driver.program({ endpoints: [], groups: ['web', 'db'], rules: [allowHostToDb] });
    assert.deepEqual(r, { changes: 1, present: false });
    assert.equal(tableExists(), false);
    assert.equal(await connects(DB), true);
  });
});
