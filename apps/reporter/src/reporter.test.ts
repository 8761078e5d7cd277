// The JSON Lines report file on a real disk: capped by rotation to <file>.1.
// DeliverFlows over gRPC: the flows reach the upstream in ReportBatch.flows
// (through the spool, with seq and boot id), never the file.
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, INTERNAL_ONLY, Logger, Role, startGrpcServer } from '@agent/grpc-kit';
import { BaseDriver, NO_CAPABILITIES, type Capabilities, type PushResult, type ReportPayload } from '@agent/drivers';
import { Driver, GrpcService, Module, type DriverName } from '@agent/option';
import { internalv1, policyv1, sinkv1, v1 } from '@agent/proto';
import { waitFor } from '@agent/testkit';
import { ReporterService } from './reporter';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-reporter-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const log = new Logger(Module.Reporter, 'error');
const report = (): v1.Report => v1.Report.fromPartial({ objectId: 'o1', timestamp: new Date() });

/** Every line of f, parsed; throws on one that is not JSON. */
function lines(f: string): unknown[] {
  const text = fs.readFileSync(f, 'utf8');
  assert.ok(text.endsWith('\n'), `${f} ends mid-line`);
  return text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as unknown);
}

describe('report file', () => {
  it('never grows past its cap: rotated to .1, both 0600, whole lines only', async () => {
    const file = path.join(tmp, 'capped', 'reports.jsonl');
    const cap = 4096;
    const service = new ReporterService({ hostId: 'h1', reportFile: file, reportFileMaxBytes: cap }, log);
    service.start('o1');
    let sent = 0;
    for (let i = 0; i < 200; i++) {
      const batch = Array.from({ length: 1 + (i % 7) }, report);
      service.send(batch);
      sent += batch.length;
      assert.ok(fs.statSync(file).size <= cap, `${fs.statSync(file).size} bytes after send ${i}`);
    }
    await service.close();
    assert.ok(fs.existsSync(`${file}.1`));
    for (const f of [file, `${file}.1`]) {
      assert.equal(fs.statSync(f).mode & 0o777, 0o600, f);
      assert.ok(fs.statSync(f).size <= cap, f);
      for (const r of lines(f)) assert.equal((r as { objectId?: string }).objectId, 'o1');
    }
    // Only one old copy is kept: earlier rotations are gone.
    assert.ok(lines(file).length + lines(`${file}.1`).length < sent);
  });

  it('continues the file it finds, counting what is already in it', async () => {
    const file = path.join(tmp, 'reopened.jsonl');
    fs.writeFileSync(file, `${JSON.stringify({ objectId: 'o1' })}\n`.repeat(100), { mode: 0o600 });
    const before = fs.statSync(file).size;
    const service = new ReporterService({ hostId: 'h1', reportFile: file, reportFileMaxBytes: before + 10 }, log);
    service.send([report()]);
    await service.close();
    assert.equal(fs.statSync(`${file}.1`).size, before);
    assert.equal(lines(file).length, 1);
  });

  it('grows without bound when the cap is 0', async () => {
    const file = path.join(tmp, 'uncapped.jsonl');
    const service = new ReporterService({ hostId: 'h1', reportFile: file, reportFileMaxBytes: 0 }, log);
    for (let i = 0; i < 100; i++) service.send([report()]);
    await service.close();
    assert.equal(lines(file).length, 100);
    assert.equal(fs.existsSync(`${file}.1`), false);
  });
});

/**
 * An upstream in this process: each push goes through the ReportBatch wire
 * format (what the RPC driver sends), is kept, and acknowledged whole.
 */
class FakeSink extends BaseDriver {
  readonly name: DriverName = Driver.Rpc;
  readonly capabilities: Capabilities = { ...NO_CAPABILITIES, report: true };
  readonly batches: sinkv1.ReportBatch[] = [];

  async health(): Promise<void> {}

  override async push(payload: ReportPayload): Promise<PushResult> {
    const batch = sinkv1.ReportBatch.decode(sinkv1.ReportBatch.encode(sinkv1.ReportBatch.fromPartial(payload as sinkv1.ReportBatch)).finish());
    this.batches.push(batch);
    const acks = new Map<string, number>();
    for (const m of [...batch.reports, ...batch.flows, ...batch.changes, ...batch.gaps]) acks.set(m.bootId, Math.max(acks.get(m.bootId) ?? 0, m.seq));
    return { accepted: batch.reports.length + batch.flows.length + batch.changes.length, acks };
  }
}

describe('deliver flows', () => {
  it('DeliverFlows: to the upstream in ReportBatch.flows with seq and boot id, host id stamped where empty; not to the report file', async () => {
    const file = path.join(tmp, 'flows', 'reports.jsonl');
    const upstream = new FakeSink();
    const service = new ReporterService({ hostId: 'h1', reportFile: file, reportFileMaxBytes: 0, upstream, spoolDir: path.join(tmp, 'flows', 'spool') }, log);
    const server = await startGrpcServer({
      listeners: [{ address: '127.0.0.1:0', authenticate: () => ({ role: Role.Internal, via: 'token' }) }],
      log,
      services: [{ name: GrpcService.Reporter, definition: internalv1.ReporterService, implementation: service.implementation(), access: INTERNAL_ONLY }],
    });
    const peer = connect(internalv1.ReporterClient, server.address);
    try {
      const at = new Date(Date.now() - 1_000);
      const flows = [
        policyv1.Flow.fromPartial({ timestamp: at, srcObjectId: 'o1', srcGroup: 'web', dstGroup: 'db', srcIp: '10.0.0.2', dstIp: '10.0.0.3', protocol: 'tcp', dstPort: 5432, verdict: policyv1.Verdict.VERDICT_ALLOWED, ruleId: 7, mode: policyv1.Mode.MODE_PROTECT, count: 3 }),
        policyv1.Flow.fromPartial({ timestamp: at, srcIp: '10.0.0.2', dstIp: '1.1.1.1', protocol: 'udp', dstPort: 53, verdict: policyv1.Verdict.VERDICT_DENIED, count: 1, hostId: 'elsewhere' }),
      ];
      service.send([report()]);
      await peer.call('deliverFlows', { flows }, { timeoutMs: 5_000 });
      await peer.call('deliverFlows', { flows: [flows[0]!] }, { timeoutMs: 5_000 });
      await peer.call('deliverFlows', { flows: [] }, { timeoutMs: 5_000 });
      const got = await waitFor('flows at the sink', () => {
        const all = upstream.batches.flatMap((b) => b.flows);
        return all.length >= 3 ? all : undefined;
      });
      assert.equal(got.length, 3);
      const reports = upstream.batches.flatMap((b) => b.reports);
      assert.equal(reports.length, 1);
      const boot = reports[0]!.bootId;
      assert.notEqual(boot, '');
      // One spool: the report, then the flows, numbered on from it, in order.
      assert.deepEqual(got.map((f) => [f.bootId, f.seq]), [[boot, reports[0]!.seq + 1], [boot, reports[0]!.seq + 2], [boot, reports[0]!.seq + 3]]);
      assert.deepEqual(got.map((f) => f.flow?.hostId), ['h1', 'elsewhere', 'h1']);
      assert.deepEqual(got[0]!.flow, { ...flows[0]!, hostId: 'h1' });
      assert.deepEqual(got[1]!.flow, flows[1]);
      assert.deepEqual(upstream.batches.flatMap((b) => b.gaps), []);
    } finally {
      peer.close();
      await server.shutdown(500);
      await service.close();
    }
    // The report file has the report and nothing else.
    const written = lines(file) as Array<Record<string, unknown>>;
    assert.equal(written.length, 1);
    assert.equal(written[0]!.objectId, 'o1');
    assert.equal(fs.readFileSync(file, 'utf8').includes('10.0.0.3'), false, 'no flow in the report file');
  });
});
