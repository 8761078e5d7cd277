// Conntrack on the real kernel: loopback connections to addresses of the
// test's own (127.0.0.8x) are tracked like any other, no firewall needed.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as net from 'node:net';
import { Conntrack } from './conntrack';

const CUT = '127.0.0.81';
const KEPT = '127.0.0.82';
const PORT = 47_131;

/** The tracked connections to ip:PORT (conntrack -L exits 0 when there are none). */
const tracked = (ip: string): string[] =>
  execFileSync('conntrack', ['-L', '-p', 'tcp', '--orig-dst', ip, '--dport', String(PORT)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .split('\n')
    .filter((l) => l.trim() !== '');

describe('Conntrack (real conntrack)', () => {
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const accepted = new Map<string, number>();
  const ct = new Conntrack();

  const connect = (ip: string): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: ip, port: PORT, localAddress: '127.0.0.1' });
      sockets.add(s);
      s.on('error', reject);
      s.once('connect', () => resolve(s));
    });

  before(async () => {
    // What an earlier run left: closed connections linger, and their last packets were picked up in either direction.
    for (const ip of [CUT, KEPT]) for (const f of ['--orig-src', '--orig-dst']) spawnSync('conntrack', ['-D', f, ip], { stdio: 'ignore' });
    for (const ip of [CUT, KEPT]) {
      const s = net.createServer((c) => {
        sockets.add(c);
        accepted.set(ip, (accepted.get(ip) ?? 0) + 1);
        c.on('error', () => {});
      });
      await new Promise<void>((r) => s.listen(PORT, ip, r));
      servers.push(s);
    }
  });
  after(() => {
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
  });

  it('nothing matched is 0, not an error', async () => {
    assert.equal(await ct.deleteAddress('127.0.0.89'), 0);
    assert.equal(await ct.deleteMark(0x7fff_fff1), 0);
    assert.deepEqual(await ct.cut(['127.0.0.89'], [0x7fff_fff1]), { cut: 0 });
  });

  it('deletes every entry of an address, each counted once, though the four filters race over the same entries', async () => {
    await connect(KEPT);
    // The connections stay open, idle: a deleted entry does not come back without a packet.
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 30; i++) await connect(CUT);
      // The handshake's last ACK is through the server's side too: a packet late after the delete would be a new entry.
      while ((accepted.get(CUT) ?? 0) < 30 * (round + 1)) await new Promise((r) => setTimeout(r, 5));
      assert.equal(tracked(CUT).length, 30, 'loopback is tracked');
      // Original destination and reply source are the same entries: two processes race for each.
      assert.equal(await ct.deleteAddress(CUT), 30, `round ${round}`);
      assert.deepEqual(tracked(CUT), []);
      assert.equal(tracked(KEPT).length, 1, 'another address keeps its connection');
    }
  });

  it('refuses mark 0, the no-rule mark and marks past 32 bits before running anything: conntrack reads 2^32 as 0, every unmarked connection', async () => {
    const missing = new Conntrack('/nonexistent/conntrack');
    for (const mark of [0, 2 ** 32, 2 ** 32 - 1, -1, 1.5]) await assert.rejects(missing.deleteMark(mark), /not a rule mark/);
    await assert.rejects(missing.deleteAddress('::1'), /not an IPv4 address/);
    await assert.rejects(missing.deleteAddress('127.1'), /not an IPv4 address/);
  });

  it('a missing binary is an error that says so; cut() reports it instead of throwing, once', async () => {
    const missing = new Conntrack('/nonexistent/conntrack');
    await assert.rejects(missing.deleteMark(5), /\/nonexistent\/conntrack not found.*ENOENT/);
    const r = await missing.cut([CUT, KEPT], [5]);
    assert.equal(r.cut, 0);
    assert.match(r.cutError ?? '', /^\/nonexistent\/conntrack not found[^;]*$/);
  });

  it('cut() with nothing to cut runs nothing', async () => {
    assert.deepEqual(await new Conntrack('/nonexistent/conntrack').cut([], []), { cut: 0 });
  });
});
