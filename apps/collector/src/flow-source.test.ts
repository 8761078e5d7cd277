// FlowSource on the real kernel, nft and ulogd (as root): our own nft table logs packets to
// 127.0.0.x (nothing listens) with the dataplane's prefixes; they come back aggregated.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { GrpcService, loadConfig, Module } from '@agent/option';
import { connect, FailedPreconditionError, INTERNAL_ONLY, internalListener, Logger, startGrpcServer, type Peer, type RunningServer } from '@agent/grpc-kit';
import { internalv1, policyv1 } from '@agent/proto';
import { CgroupDriver, CgroupFs } from '@agent/drivers';
import { outputLogTable, ulogdPids } from '@agent/testkit';
import { CollectorService, driverSamplers, startCollector } from './collector';
import { FlowSource } from './flow-source';

const GROUP = 4712; // 4713: the start-failure case; 4714, 4715: the gRPC cases
const TABLE = 'agent_flowsource_test';
const WINDOW_MS = 400;
const MAX_KEYS = 5;
const DENIED = '127.0.0.81'; // udp/9: D:0:fwd
const ALLOWED = '127.0.0.82'; // udp/10: A:7:out
const FOREIGN = '127.0.0.83'; // udp: a prefix the dataplane never writes
const VIOLATION = '127.0.0.84'; // tcp/11: V:12:in
const MANY = '127.0.0.85'; // udp, any port: A:3:fwd
const GRPC = '127.0.0.86'; // udp/12: L:10001:fwd, group 4714
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-flows-'));
const dir = path.join(tmp, 'flowlog');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, cond: () => boolean, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

/** n UDP datagrams from one socket, all sent before it resolves. */
async function sendUdp(dst: string, port: number | readonly number[], n = 1): Promise<void> {
  const sock = dgram.createSocket('udp4');
  sock.on('error', () => {}); // port unreachable: not our concern
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  const ports = typeof port === 'number' ? Array.from({ length: n }, () => port) : port;
  await Promise.all(ports.map((p, i) => new Promise<void>((resolve) => sock.send(`${i}`, p, dst, () => resolve()))));
  sock.close();
}

const CONF = path.join(dir, 'ulogd.conf');

/** The flows of a batch, by destination address. */
function byDst(b: internalv1.FlowBatch): Map<string, internalv1.LoggedFlow> {
  return new Map(b.flows.map((f) => [f.flow!.dstIp, f]));
}

const errors: string[] = [];
const source = new FlowSource({ group: GROUP, dir, windowMs: WINDOW_MS, maxKeys: MAX_KEYS, onError: (m) => errors.push(m) });
const batches: internalv1.FlowBatch[] = [];
let unsubscribe: (() => void) | undefined;
let table: { drop(): void } | undefined;

before(async () => {
  table = outputLogTable(TABLE, [
    `ip daddr ${DENIED} udp dport 9 log prefix "D:0:fwd" group ${GROUP}`,
    `ip daddr ${ALLOWED} udp dport 10 log prefix "A:7:out" group ${GROUP}`,
    `ip daddr ${FOREIGN} udp dport 9 log prefix "agent-test" group ${GROUP}`,
    `ip daddr ${VIOLATION} tcp dport 11 log prefix "V:12:in" group ${GROUP}`,
    `ip daddr ${MANY} meta l4proto udp log prefix "A:3:fwd" group ${GROUP}`,
    `ip daddr ${GRPC} udp dport 12 log prefix "L:10001:fwd" group ${GROUP + 2}`,
  ]);
  unsubscribe = await source.subscribe((b) => batches.push(b));
});

after(async () => {
  unsubscribe?.();
  await source.close();
  table?.drop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('FlowSource', () => {
  it('aggregates 50 and 20 packets of two flows in one window into one batch of two flows', async () => {
    const from = batches.length;
    const [packets, flows] = [source.packets, source.flows];
    const t0 = Date.now();
    await Promise.all([sendUdp(DENIED, 9, 50), sendUdp(ALLOWED, 10, 20)]);
    const t1 = Date.now();
    await waitUntil('a batch', () => batches.length > from);
    await sleep(WINDOW_MS + 300); // nothing more may come
    const got = batches.slice(from);
    assert.equal(got.length, 1, `${got.length} batches`);
    const flowsOf = byDst(got[0]!);
    assert.equal(got[0]!.flows.length, 2);
    const denied = flowsOf.get(DENIED)!;
    const allowed = flowsOf.get(ALLOWED)!;
    const common = { srcObjectId: '', dstObjectId: '', srcGroup: '', dstGroup: '', srcIp: '127.0.0.1', protocol: 'udp', mode: policyv1.Mode.MODE_UNSPECIFIED, hostId: '' };
    assert.deepEqual({ ...denied.flow!, timestamp: undefined }, { ...common, timestamp: undefined, dstIp: DENIED, dstPort: 9, verdict: policyv1.Verdict.VERDICT_DENIED, ruleId: 0, count: 50 });
    assert.equal(denied.path, 'fwd');
    assert.deepEqual({ ...allowed.flow!, timestamp: undefined }, { ...common, timestamp: undefined, dstIp: ALLOWED, dstPort: 10, verdict: policyv1.Verdict.VERDICT_ALLOWED, ruleId: 7, count: 20 });
    assert.equal(allowed.path, 'out');
    for (const f of [denied, allowed]) {
      const at = f.flow!.timestamp!.getTime();
      assert.ok(at >= t0 - 1_000 && at <= t1 + 1_000, `timestamp ${f.flow!.timestamp!.toISOString()} not near the sends (${new Date(t0).toISOString()})`);
    }
    assert.equal(source.packets - packets, 70);
    assert.equal(source.flows - flows, 2);
  });

  it('reports a TCP SYN with its protocol, port, verdict, rule and path', async () => {
    const from = batches.length;
    await new Promise<void>((resolve) => net.connect(11, VIOLATION).on('error', () => resolve()).on('connect', function (this: net.Socket) {
      this.destroy();
      resolve();
    }));
    await waitUntil('a batch', () => batches.length > from);
    const f = byDst(batches[from]!).get(VIOLATION);
    assert.ok(f?.flow);
    assert.equal(f.path, 'in');
    assert.equal(f.flow.protocol, 'tcp');
    assert.equal(f.flow.dstPort, 11);
    assert.equal(f.flow.verdict, policyv1.Verdict.VERDICT_VIOLATION);
    assert.equal(f.flow.ruleId, 12);
    assert.equal(f.flow.count, 1);
  });

  it('puts packets spaced beyond the window into separate batches', async () => {
    const from = batches.length;
    await sendUdp(DENIED, 9);
    await waitUntil('the first batch', () => batches.length > from);
    await sleep(100);
    await sendUdp(DENIED, 9, 2);
    await waitUntil('the second batch', () => batches.length > from + 1);
    const got = batches.slice(from);
    assert.equal(got.length, 2);
    assert.deepEqual(got.map((b) => b.flows.map((f) => [f.flow!.dstIp, f.flow!.count])), [[[DENIED, 1]], [[DENIED, 2]]]);
    assert.ok(got[1]!.flows[0]!.flow!.timestamp! > got[0]!.flows[0]!.flow!.timestamp!);
  });

  it('skips and counts packets whose prefix the dataplane did not write', async () => {
    const from = batches.length;
    const [unparsed, packets] = [source.unparsed, source.packets];
    await sendUdp(FOREIGN, 9, 3);
    await sendUdp(DENIED, 9);
    await waitUntil('a batch', () => batches.length > from);
    await waitUntil('3 unparsed', () => source.unparsed === unparsed + 3);
    await sleep(WINDOW_MS + 200);
    const got = batches.slice(from);
    assert.deepEqual(got.flatMap((b) => b.flows.map((f) => [f.flow!.dstIp, f.flow!.count])), [[DENIED, 1]]);
    assert.equal(source.packets - packets, 4);
  });

  it(`flushes a window early rather than hold more than maxKeys (${MAX_KEYS}) flows`, async () => {
    const from = batches.length;
    const ports = [21, 22, 23, 24, 25, 26, 27, 28];
    const t0 = Date.now();
    await sendUdp(MANY, ports);
    await waitUntil('the early batch', () => batches.length > from);
    const early = Date.now() - t0;
    await waitUntil('the second batch', () => batches.length > from + 1);
    const got = batches.slice(from);
    assert.deepEqual(got.map((b) => b.flows.length), [MAX_KEYS, ports.length - MAX_KEYS]);
    assert.ok(early < WINDOW_MS, `the full window went out after ${early} ms`);
    const all = got.flatMap((b) => b.flows);
    assert.deepEqual(all.map((f) => f.flow!.dstPort).sort(), ports);
    assert.ok(all.every((f) => f.flow!.count === 1 && f.flow!.ruleId === 3 && f.path === 'fwd'));
  });

  it('gives every subscriber the same batches; one leaving keeps ulogd for the rest', async () => {
    const mine: internalv1.FlowBatch[] = [];
    const from = batches.length;
    const leave = await source.subscribe((b) => mine.push(b));
    assert.equal(ulogdPids(CONF).length, 1, 'a second subscriber starts no second ulogd');
    await sendUdp(ALLOWED, 10, 3);
    await waitUntil('both', () => mine.length > 0 && batches.length > from);
    assert.deepEqual(mine, batches.slice(from));
    assert.equal(mine[0]!.flows[0]!.flow!.count, 3);
    leave();
    leave(); // twice is once
    assert.ok(source.running);
    await sleep(200);
    assert.equal(ulogdPids(CONF).length, 1);
  });

  it('stops ulogd at the last unsubscribe; concurrent subscribers then share one new start', async () => {
    unsubscribe!();
    unsubscribe = undefined;
    assert.equal(source.running, false);
    await waitUntil('ulogd gone', () => ulogdPids(CONF).length === 0);
    const a: internalv1.FlowBatch[] = [];
    const b: internalv1.FlowBatch[] = [];
    const [leaveA, leaveB] = await Promise.all([source.subscribe((x) => a.push(x)), source.subscribe((x) => b.push(x))]);
    assert.equal(ulogdPids(CONF).length, 1);
    await sendUdp(DENIED, 9);
    await waitUntil('both', () => a.length > 0 && b.length > 0);
    leaveA();
    leaveB();
    await waitUntil('ulogd gone', () => ulogdPids(CONF).length === 0);
    unsubscribe = await source.subscribe((x) => batches.push(x));
    assert.deepEqual(errors, []);
  });

  it('rejects subscribe naming the cause when ulogd cannot start, and tries again next time', async () => {
    let ulogd = '/nonexistent/ulogd';
    const failDir = path.join(tmp, 'failing');
    const failing = new FlowSource({ group: GROUP + 1, dir: failDir, windowMs: WINDOW_MS, get ulogdPath() { return ulogd; } });
    const t0 = Date.now();
    const results = await Promise.allSettled([failing.subscribe(() => {}), failing.subscribe(() => {})]);
    assert.ok(Date.now() - t0 < 2_000);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      const err: unknown = r.reason;
      assert.ok(err instanceof FailedPreconditionError, String(err));
      assert.match(err.message, /^flow log \(NFLOG group 4713\) did not start: ulogd \(\/nonexistent\/ulogd\) did not start: .*ENOENT/);
    }
    assert.equal(failing.running, false);
    ulogd = 'ulogd';
    const leave = await failing.subscribe(() => {});
    assert.equal(ulogdPids(path.join(failDir, 'ulogd.conf')).length, 1);
    leave();
    await failing.close();
    assert.deepEqual(ulogdPids(path.join(failDir, 'ulogd.conf')), []);
  });
});

describe('Collector WatchFlows', () => {
  const dataDir = path.join(tmp, 'collector');
  const token = randomBytes(16).toString('hex');
  const config = loadConfig({ AGENT_DATA_DIR: dataDir, AGENT_NFLOG_GROUP: String(GROUP + 2), AGENT_FLOW_WINDOW_MS: '200', AGENT_LOG_LEVEL: 'error' });
  const conf = path.join(dataDir, 'flowlog', 'ulogd.conf');
  const reporter = connect(internalv1.ReporterClient, '127.0.0.1:9'); // never called
  const log = new Logger(Module.Collector, 'error');
  const servers: RunningServer[] = [];
  const peers: Peer<internalv1.CollectorClient>[] = [];
  const services: CollectorService[] = [];

  async function serve(service: CollectorService): Promise<Peer<internalv1.CollectorClient>> {
    const server = await startGrpcServer({
      listeners: [internalListener(config, '127.0.0.1:0', 'AGENT_COLLECTOR_LISTEN', token)],
      log,
      services: [{ name: GrpcService.Collector, definition: internalv1.CollectorService, implementation: service.implementation(), access: INTERNAL_ONLY }],
    });
    servers.push(server);
    services.push(service);
    const peer = connect(internalv1.CollectorClient, server.address, { token });
    peers.push(peer);
    return peer;
  }

  /** How the watch ended: 'end', or the status code and details. */
  function ending(call: ClientReadableStream<internalv1.FlowBatch>): Promise<string> {
    return new Promise((resolve) => {
      call.on('error', (e: ServiceError) => resolve(`${status[e.code]}: ${e.details}`));
      call.on('end', () => resolve('end'));
    });
  }

  after(async () => {
    for (const p of peers) p.close();
    reporter.close();
    for (const s of services) await s.close();
    for (const s of servers) await s.shutdown(500);
  });

  it('streams batches from startCollector; a cancelled watch stops ulogd, closing ends the watches', async () => {
    const started = await startCollector(config, { objects: new Map(), cgroup: new CgroupDriver(new CgroupFs(config.cgroupParent)) }, reporter, internalListener(config, '127.0.0.1:0', 'AGENT_COLLECTOR_LISTEN', token));
    servers.push(started.server);
    services.push(started.service);
    const peer = connect(internalv1.CollectorClient, started.server.address, { token });
    peers.push(peer);

    const got: internalv1.FlowBatch[] = [];
    const call = peer.client.watchFlows({}, peer.traceMetadata());
    call.on('data', (b: internalv1.FlowBatch) => got.push(b));
    call.on('error', () => {});
    await waitUntil('ulogd for the watch', () => ulogdPids(conf).length === 1);
    await sendUdp(GRPC, 12, 5);
    await waitUntil('a batch over gRPC', () => got.length > 0);
    assert.equal(got[0]!.flows.length, 1);
    const f = got[0]!.flows[0]!;
    assert.equal(f.path, 'fwd');
    assert.equal(f.flow!.dstIp, GRPC);
    assert.equal(f.flow!.verdict, policyv1.Verdict.VERDICT_LEARNED);
    assert.equal(f.flow!.ruleId, 10001);
    assert.equal(f.flow!.count, 5);
    assert.equal(f.flow!.dstPort, 12);
    assert.ok(f.flow!.timestamp instanceof Date);
    call.cancel();
    await waitUntil('ulogd gone after cancel', () => ulogdPids(conf).length === 0);

    const again = peer.client.watchFlows({}, peer.traceMetadata());
    again.on('data', () => {});
    const ended = ending(again);
    await waitUntil('ulogd for the second watch', () => ulogdPids(conf).length === 1);
    await started.service.close();
    assert.equal(await ended, 'end');
    assert.deepEqual(ulogdPids(conf), []);

    const late = peer.client.watchFlows({}, peer.traceMetadata());
    late.on('data', () => {});
    assert.equal(await ending(late), 'UNAVAILABLE: flow source is closed');
  });

  it('ends a watch with FAILED_PRECONDITION naming the cause when the flow log cannot start', async () => {
    const flows = new FlowSource({ group: GROUP + 3, dir: path.join(tmp, 'grpc-failing'), windowMs: 200, ulogdPath: '/nonexistent/ulogd' });
    const peer = await serve(new CollectorService(driverSamplers({ objects: new Map() }), reporter, { hostId: 'test', baseIntervalMs: 3_600_000 }, log, flows));
    const call = peer.client.watchFlows({}, peer.traceMetadata());
    call.on('data', () => {});
    assert.match(await ending(call), /^FAILED_PRECONDITION: flow log \(NFLOG group 4715\) did not start: ulogd \(\/nonexistent\/ulogd\) did not start: .*ENOENT/);
  });

  it('ends a watch with FAILED_PRECONDITION when the collector has no flow log', async () => {
    const peer = await serve(new CollectorService(driverSamplers({ objects: new Map() }), reporter, { hostId: 'test', baseIntervalMs: 3_600_000 }, log));
    const call = peer.client.watchFlows({}, peer.traceMetadata());
    call.on('data', () => {});
    assert.equal(await ending(call), 'FAILED_PRECONDITION: this collector has no flow log');
  });
});
