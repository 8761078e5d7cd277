// FlowLog on the real kernel, nft and ulogd (as root): packets logged by our own
// nft table on the loopback, to an address nothing listens on.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { outputLogTable, ulogdPids } from '@agent/testkit';
import { FlowLog, type NflogPacket } from './nflog';

const GROUP = 4711;
const TABLE = 'agent_nflog_test';
const DST = '127.0.0.99';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-nflog-'));
const dir = path.join(tmp, 'flow');
const conf = path.join(dir, 'ulogd.conf');

const packets: NflogPacket[] = [];
const errors: string[] = [];
let flow: FlowLog;
let table: { drop(): void } | undefined;

/** Resolves with the packets matching pred once there are n of them; rejects after ms. */
async function waitFor(pred: (p: NflogPacket) => boolean, n: number, ms: number): Promise<NflogPacket[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const hits = packets.filter(pred);
    if (hits.length >= n) return hits;
    if (Date.now() > deadline) throw new Error(`${hits.length} of ${n} packets after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  table = outputLogTable(TABLE, [`ip daddr ${DST} tcp dport 9 log prefix "T:1" group ${GROUP}`, `ip daddr ${DST} udp dport 9 log prefix "U:2" group ${GROUP}`]);
  flow = await FlowLog.start({ group: GROUP, dir, onPacket: (p) => packets.push(p), onError: (m) => errors.push(m) });
});

after(async () => {
  await flow?.close();
  table?.drop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('FlowLog', () => {
  it('reports a TCP SYN with prefix, addresses, ports and time within 2 s', async () => {
    const t0 = Date.now();
    await new Promise<void>((resolve) => net.connect(9, DST).on('error', () => resolve()).on('connect', function (this: net.Socket) {
      this.destroy();
      resolve();
    }));
    const [p] = await waitFor((q) => q.prefix === 'T:1', 1, 2_000);
    assert.ok(p);
    assert.equal(p.dstIp, DST);
    assert.equal(p.srcIp, '127.0.0.1');
    assert.equal(p.dstPort, 9);
    assert.equal(p.protocol, 'tcp');
    assert.ok(p.srcPort && p.srcPort > 0);
    assert.ok(Math.abs(p.at.getTime() - t0) < 2_000, `at ${p.at.toISOString()} vs ${new Date(t0).toISOString()}`);
  });

  it('delivers all of 2,000 UDP datagrams sent in bursts within 10 s', async (t) => {
    const sock = dgram.createSocket('udp4');
    sock.on('error', () => {}); // port unreachable comes back as ICMP: not our concern
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
    const port = sock.address().port;
    const t0 = Date.now();
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => new Promise<void>((resolve) => sock.send(`${batch * 100 + i}`, 9, DST, () => resolve()))));
      await new Promise((r) => setTimeout(r, 5));
    }
    const sentMs = Date.now() - t0;
    try {
      const hits = await waitFor((p) => p.prefix === 'U:2' && p.srcPort === port, 2_000, 10_000);
      t.diagnostic(`2000/2000 sent in ${sentMs} ms, all delivered ${Date.now() - t0} ms after the first send`);
      assert.ok(hits.every((p) => p.protocol === 'udp' && p.dstIp === DST && p.dstPort === 9));
    } finally {
      sock.close();
    }
    assert.equal(flow.malformed, 0);
  });

  it('joins lines split across chunks and skips lines that are not JSON', async () => {
    const before = flow.malformed;
    const c = net.connect(path.join(dir, 'ulogd.sock'));
    await new Promise((r) => c.once('connect', r));
    c.write('{"src_ip": "10.0.0.1", "dest_');
    await new Promise((r) => setTimeout(r, 50));
    c.write('ip": "10.0.0.2", "ip.protocol": 132, "src_port": 5, "oob.prefix": " X:9 ", "oob.time.sec": 1700000000, "oob.time.usec": 250000}\nnot json\n');
    const [p] = await waitFor((q) => q.prefix === 'X:9', 1, 2_000);
    c.destroy();
    assert.deepEqual(p, { at: new Date('2023-11-14T22:13:20.250Z'), prefix: 'X:9', srcIp: '10.0.0.1', dstIp: '10.0.0.2', protocol: 'sctp', srcPort: 5 });
    assert.equal(flow.malformed, before + 1);
  });

  it('restarts a ulogd that died, tells onError, and goes on delivering', async () => {
    const [pid] = ulogdPids(conf);
    assert.ok(pid);
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 3_000;
    while (!(ulogdPids(conf).some((p) => p !== pid) && errors.length > 0)) {
      assert.ok(Date.now() < deadline, 'ulogd was not restarted');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(errors[0] ?? '', /^restarting ulogd in 250 ms: ulogd exited with signal SIGKILL$/);
    const n = packets.filter((p) => p.prefix === 'T:1').length;
    // The new ulogd is running; it may not have connected yet, so knock until it reports.
    const until = Date.now() + 3_000;
    while (packets.filter((p) => p.prefix === 'T:1').length === n && Date.now() < until) {
      await new Promise<void>((resolve) => net.connect(9, DST).on('error', () => resolve()));
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(packets.filter((p) => p.prefix === 'T:1').length > n, 'no packet after the restart');
  });

  it('keeps its files private and leaves no ulogd behind on close', async () => {
    const mode = (f: string): number => fs.statSync(f).mode & 0o777;
    assert.equal(mode(dir), 0o700);
    assert.equal(mode(conf), 0o600);
    assert.equal(mode(path.join(dir, 'ulogd.sock')), 0o600);
    assert.equal(mode(path.join(dir, 'ulogd.log')), 0o600);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['ulogd.conf', 'ulogd.log', 'ulogd.pid', 'ulogd.sock']);
    assert.ok(ulogdPids(conf).length > 0);
    await flow.close();
    assert.deepEqual(ulogdPids(conf), []);
    assert.equal(fs.existsSync(path.join(dir, 'ulogd.sock')), false);
  });

  it('a ulogd whose agent is SIGKILLed goes with it (parent-death signal), so it holds no NFLOG group', async () => {
    const killedDir = path.join(tmp, 'killed');
    const killedConf = path.join(killedDir, 'ulogd.conf');
    const script = `require(${JSON.stringify(require.resolve('./nflog'))}).FlowLog.start({ group: ${GROUP + 2}, dir: ${JSON.stringify(killedDir)}, onPacket: () => {} }).then(() => console.log('up'), (e) => { console.error(e); process.exit(1); })`;
    const agent = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      agent.stdout.on('data', (d: Buffer) => d.toString().includes('up') && resolve());
      agent.once('exit', (code) => reject(new Error(`exited with ${code} before ulogd was up`)));
    });
    const pids = (): number[] => ulogdPids(killedConf);
    assert.equal(pids().length, 1, 'its ulogd runs');
    agent.kill('SIGKILL');
    const deadline = Date.now() + 3_000;
    while (pids().length > 0) {
      assert.ok(Date.now() < deadline, `ulogd ${pids().join(', ')} outlived its agent`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it('rejects quickly, naming ulogd, when ulogd is missing', async () => {
    const t0 = Date.now();
    await assert.rejects(FlowLog.start({ group: GROUP + 1, dir: path.join(tmp, 'missing'), onPacket: () => {}, ulogdPath: '/nonexistent/ulogd' }), /ulogd.*ENOENT/);
    assert.ok(Date.now() - t0 < 1_000);
  });
});
