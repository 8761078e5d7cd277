// The network driver on the real kernel: a table of the test's own, in the
// host namespace, whose members are loopback addresses (127.0.0.x), so the
// host's own traffic to them crosses the output hook the way host-to-container
// traffic does.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { NO_RULE_MARK } from '@agent/option';
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
    assert.deepEqual(r, { changes: 0, present: false, cut: 0 });
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
    assert.deepEqual(r, { changes: 1, present: false, cut: 0 });
    assert.equal(tableExists(), false);
    assert.equal(await connects(DB), true);
  });
});

/**
 * Cutting established connections: echo servers on DB, clients from
 * 127.0.0.1 kept open. The driver's conntrack is a wrapper that records its
 * calls, so "no call" can be seen.
 */
describe('NetworkDriver cutting connections (real nftables and conntrack)', () => {
  const table = `agent_cut_test_${process.pid}`;
  const [echoA, echoB] = [PORT + 1, PORT + 2];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-cut-test-'));
  const wrapper = path.join(dir, 'conntrack');
  const callLog = path.join(dir, 'calls');
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const driver = new NetworkDriver({ table, logGroup: LOG_GROUP, conntrackPath: wrapper });

  const allowEcho = (id: number, port: number): NetRule => ({ id, from: 'host', to: 'db', ports: [`tcp/${port}`], action: 'allow' });
  const quarantined = (...ips: string[]): Endpoint[] => [WEB, DB].map((ip) => ({ ...endpoint(`obj-${ip}`, ip, [ip === WEB ? 'web' : 'db']), quarantined: ips.includes(ip) }));

  /** The conntrack calls since the last look, sorted. */
  const calls = (): string[] => {
    const text = fs.existsSync(callLog) ? fs.readFileSync(callLog, 'utf8') : '';
    fs.rmSync(callLog, { force: true });
    // Distinct calls: a delete that lost a race with another over the same entry is run again (conntrack 1.4.7).
    return [...new Set(text.split('\n').filter((l) => l !== ''))].sort();
  };

  /** The conntrack entries of a client's connection (from its own port), with more filters ("--mark", "N"). */
  const tracked = (sock: net.Socket, ...filter: string[]): string[] =>
    execFileSync('conntrack', ['-L', '-p', 'tcp', '--orig-src', '127.0.0.1', '--orig-dst', DB, '--sport', String(sock.localPort), ...filter], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((l) => l.trim() !== '');

  const open = (port: number): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: DB, port, localAddress: '127.0.0.1' });
      sockets.add(s);
      s.on('error', reject);
      s.setTimeout(2000, () => reject(new Error(`connect to ${DB}:${port} timed out`)));
      s.once('connect', () => {
        s.setTimeout(0);
        resolve(s);
      });
    });

  /** Whether what the client writes comes back within ms (a dropped packet is retransmitted, and dropped again). */
  const echoes = (sock: net.Socket, ms = 500): Promise<boolean> =>
    new Promise((resolve) => {
      const token = `ping-${Math.random()}`;
      let got = '';
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        sock.off('data', onData);
        resolve(ok);
      };
      const onData = (b: Buffer): void => {
        got += b.toString('utf8');
        if (got.includes(token)) done(true);
      };
      const timer = setTimeout(() => done(false), ms);
      sock.on('data', onData);
      sock.write(token);
    });

  before(async () => {
    fs.writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> '${callLog}'\nexec conntrack "$@"\n`, { mode: 0o755 });
    for (const port of [echoA, echoB]) {
      const s = net.createServer((c) => {
        sockets.add(c);
        c.on('error', () => {});
        c.pipe(c);
      });
      await new Promise<void>((r) => s.listen(port, DB, r));
      servers.push(s);
    }
  });
  after(() => {
    // A connection whose packets are dropped would hold the process: every end is destroyed, not ended.
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
    spawnSync('nft', ['delete', 'table', 'inet', table], { stdio: 'ignore' });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a live connection goes on through unrelated changes and is cut once its endpoint is quarantined; the same quarantine again cuts nothing', { timeout: 30_000 }, async () => {
    const rules = [allowEcho(10, echoA)];
    const first = await driver.program(state(rules));
    assert.equal(first.cut, 0);
    assert.deepEqual(calls(), []);
    const sock = await open(echoA);
    assert.equal(await echoes(sock), true);
    assert.equal(tracked(sock, '--mark', '10').length, 1, 'loopback is tracked, marked by rule 10');

    // Unrelated: a rule more, a membership change, another endpoint quarantined (its connections alone are cut).
    for (const s of [state([...rules, allowHostToDb]), state(rules, [endpoint('obj-web', WEB, ['web', 'db']), endpoint('obj-db', DB, ['db'])])]) {
      const r = await driver.program(s);
      assert.ok(r.changes > 0);
      assert.equal(r.cut, 0);
      assert.deepEqual(calls(), []);
    }
    const web = await driver.program(state(rules, quarantined(WEB)));
    assert.equal(web.cut, 0, 'no revoke: nothing cut before the answer');
    assert.equal((await web.quarantineCut)?.cutError, undefined, 'the quarantined are cut after it');
    assert.deepEqual(calls(), ['-D --orig-dst', '-D --orig-src', '-D --reply-dst', '-D --reply-src'].map((c) => `${c} ${WEB}`));
    assert.equal(await echoes(sock), true, 'still going');
    assert.equal(tracked(sock).length, 1);

    const db = await driver.program(state(rules, quarantined(WEB, DB)));
    assert.equal(await echoes(sock), false, 'its packets are dropped as soon as program() answers');
    const dbCut = await db.quarantineCut;
    assert.equal(dbCut?.cutError, undefined);
    assert.ok((dbCut?.cut ?? 0) >= 1, `cut: ${dbCut?.cut}`);
    assert.deepEqual(calls(), ['-D --orig-dst', '-D --orig-src', '-D --reply-dst', '-D --reply-src'].map((c) => `${c} ${DB}`), 'only the newly quarantined');
    assert.deepEqual(tracked(sock), [], 'its entry is gone');
    assert.equal(await echoes(sock), false, 'cut');

    assert.deepEqual(await driver.program(state(rules, quarantined(WEB, DB))), { changes: 0, present: true, cut: 0 });
    assert.deepEqual(calls(), []);
    // A fresh driver finds them in quarantine already: it would fail, had it called the missing conntrack.
    const fresh = new NetworkDriver({ table, logGroup: LOG_GROUP, conntrackPath: '/nonexistent/conntrack' });
    assert.deepEqual(await fresh.program(state(rules, quarantined(WEB, DB))), { changes: 0, present: true, cut: 0 });
  });

  it('a failed cut is reported, not thrown: the quarantine is programmed all the same', async () => {
    await driver.program(state([allowEcho(10, echoA)]));
    const broken = new NetworkDriver({ table, logGroup: LOG_GROUP, conntrackPath: '/nonexistent/conntrack' });
    const r = await broken.program(state([allowEcho(10, echoA)], quarantined(DB)));
    assert.ok(r.changes > 0);
    const q = await r.quarantineCut;
    assert.equal(q?.cut, 0);
    assert.match(q?.cutError ?? '', /\/nonexistent\/conntrack not found/);
    assert.match(execFileSync('nft', ['list', 'set', 'inet', table, 'quarantine'], { encoding: 'utf8' }), new RegExp(DB.replace(/\./g, '\\.')));
    // Back to what the other driver followed (set elements only, the same rule handles).
    assert.equal((await broken.program(state([allowEcho(10, echoA)]))).cutError, undefined);
  });

  it('revoke cuts the connections a rule allowed (its mark), after the rule is gone, and no other', { timeout: 30_000 }, async () => {
    const r0 = await driver.program(state([allowEcho(11, echoA), allowEcho(12, echoB)]));
    assert.equal(r0.cutError, undefined);
    calls();
    const a = await open(echoA);
    const b = await open(echoB);
    assert.equal(await echoes(a), true);
    assert.equal(await echoes(b), true);
    assert.equal(tracked(a, '--mark', '11').length, 1, 'marked by rule 11');
    assert.equal(tracked(b, '--mark', '12').length, 1, 'marked by rule 12');

    // Removing the rule alone leaves what it allowed: established connections pass.
    const removed = await driver.program(state([allowEcho(12, echoB)]));
    assert.ok(removed.changes > 0);
    assert.equal(removed.cut, 0);
    assert.equal(await echoes(a), true, 'not cut without revoke');

    // Nothing left to change in the table: the revoke is done all the same.
    const revoked = await driver.program({ ...state([allowEcho(12, echoB)]), revoke: [11] });
    assert.equal(revoked.changes, 0);
    assert.equal(revoked.cutError, undefined);
    assert.ok(revoked.cut >= 1, `cut: ${revoked.cut}`);
    assert.deepEqual(calls(), ['-D --mark 11']);
    assert.deepEqual(tracked(a, '--mark', '11'), [], 'the entry of rule 11 is gone');
    assert.equal(tracked(b, '--mark', '12').length, 1, 'the entry of rule 12 stays');
    assert.equal(await echoes(a), false, 'no rule allows it any more');
    assert.equal(await echoes(b), true);
  });

  it('an established connection the policy never passed meets it now: dropped in protect, marked by the rule that allows it, marked as passed by no rule in monitor', { timeout: 30_000 }, async () => {
    assert.equal((await driver.program({ endpoints: [], groups: [], rules: [] })).present, false);
    const [a, b] = [await open(echoA), await open(echoB)];
    assert.equal(await echoes(a), true);
    assert.equal(tracked(a, '--mark', '0').length, 1, 'opened before any policy: unmarked');

    await driver.program(state([]));
    assert.equal(await echoes(a), false, 'protect, no rule: established is no pass');
    await driver.program(state([allowEcho(11, echoA)]));
    assert.equal(await echoes(a, 2000), true, 'allowed by rule 11 (the retransmission)');
    assert.equal(tracked(a, '--mark', '11').length, 1, 'and marked by it');

    assert.equal(await echoes(b), false, 'no rule for echoB');
    await driver.program(state([], [endpoint('obj-web', WEB, ['web']), endpoint('obj-db', DB, ['db'], 'monitor')]));
    assert.equal(await echoes(b, 2000), true, 'monitor passes it');
    assert.equal(tracked(b, '--mark', String(NO_RULE_MARK)).length, 1, 'marked as passed by no rule');
    assert.equal(tracked(a, '--mark', '11').length, 1, 'rule 11 is gone, its connection stays');
  });
});
