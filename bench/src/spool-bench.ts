// Bus Out replay: a backlog of reports left in the spool (an upstream outage,
// or a restart during one) sent to a real gRPC ReportSink by the reporter's
// BusOut, beside the same reports pushed straight from memory through the same
// RPC driver (what the reporter did before it had a spool), and beside the
// target of 5,000 reports/s. Also the append cost per report.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Logger, Role, startGrpcServer, unary, type RunningServer } from '@agent/grpc-kit';
import { RpcDriver } from '@agent/drivers';
import { GrpcService } from '@agent/option';
import { sinkv1, v1 } from '@agent/proto';
import { BusOut } from '@agent/reporter';
import { Kind, Spool } from '@agent/spool';
import type { StoreBenchKit } from './store-bench';

const S = { backlog: 50_000, appendBatch: 50, target: 5_000 };

/** A ReportSink that stores nothing and acknowledges the highest seq of each boot it is sent. */
async function startAcker(): Promise<{ server: RunningServer; received: () => number }> {
  let received = 0;
  const ack = (b: sinkv1.ReportBatch): sinkv1.PushResponse => {
    received += b.reports.length;
    const top = new Map<string, number>();
    for (const r of [...b.reports, ...b.changes]) top.set(r.bootId, Math.max(top.get(r.bootId) ?? 0, r.seq));
    return { accepted: b.reports.length, acks: [...top].map(([bootId, seq]) => ({ bootId, seq })) };
  };
  const server = await startGrpcServer({
    listeners: [{ address: '127.0.0.1:0', authenticate: () => ({ role: Role.Internal, via: 'token' }) }],
    log: new Logger('bench-sink', 'error'),
    services: [
      {
        name: GrpcService.ReportSink,
        definition: sinkv1.ReportSinkService,
        implementation: {
          registerHost: unary(new Logger('bench-sink', 'error'), async () => ({})),
          push: unary(new Logger('bench-sink', 'error'), async (b: sinkv1.ReportBatch) => ack(b)),
          pushChanges: unary(new Logger('bench-sink', 'error'), async () => ({ accepted: 0, acks: [] })),
        } satisfies sinkv1.ReportSinkServer,
        access: { roles: [Role.Internal] },
      },
    ],
  });
  server.health.setAll(true);
  return { server, received: () => received };
}

function report(i: number): v1.Report {
  return v1.Report.fromPartial({ objectId: `obj-${(i % 50).toString(16).padStart(16, '0')}`, hostId: 'bench-host', timestamp: new Date(), cpuUsageNs: 123_456_789 + i, cpuPercent: 1.5, memoryUsageBytes: 12_345_678, memoryLimitBytes: 67_108_864, pids: 3 });
}

export async function spoolCase(kit: StoreBenchKit): Promise<void> {
  const { record, log, nowMs } = kit;
  log(`spool: ${S.backlog} reports in the spool, replayed to a gRPC sink`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-bench-spool-'));
  const sink = await startAcker();
  const upstream = new RpcDriver(sink.server.address);
  try {
    const reports = Array.from({ length: S.backlog }, (_, i) => report(i));

    // The append: what each report costs the reporter while the upstream is away.
    const spool = new Spool(dir, { maxBytes: 1024 * 1024 * 1024 });
    const t0 = nowMs();
    for (let i = 0; i < reports.length; i += S.appendBatch) {
      spool.append(reports.slice(i, i + S.appendBatch).map((r) => ({ kind: Kind.Sample, payload: Buffer.from(v1.Report.encode(r).finish()) })));
    }
    const appendUs = ((nowMs() - t0) * 1000) / reports.length;
    const bytes = spool.stats().bytes;

    // Replay: BusOut sends until the upstream has acknowledged everything.
    const before = sink.received();
    const t1 = nowMs();
    const bus = new BusOut(spool, upstream, 'bench-host', new Logger('bench-reporter', 'error'));
    while (spool.stats().backlog > 0) await new Promise((r) => setTimeout(r, 5));
    const replayS = (nowMs() - t1) / 1000;
    const delivered = sink.received() - before;
    bus.close();
    const spoolRate = delivered / replayS;

    // The peer: the same reports pushed from memory in batches of 500, no spool.
    const t2 = nowMs();
    for (let i = 0; i < reports.length; i += 500) {
      await upstream.push({ hostId: 'bench-host', reports: reports.slice(i, i + 500).map((r, k) => ({ ...r, seq: i + k + 1, bootId: 'memory' })) });
    }
    const memoryRate = reports.length / ((nowMs() - t2) / 1000);

    record({ case: 'spool replay', metric: 'reports/s delivered and acknowledged', unit: '/s', agent: spoolRate, agent_name: 'BusOut from the spool', peer: memoryRate, peer_name: 'RpcDriver from memory (no spool)', note: `${delivered} reports, ${Math.round(bytes / 1024)} KiB on disk` }, 'higher');
    record({ case: 'spool replay', metric: 'reports/s against the target', unit: '/s', agent: spoolRate, agent_name: 'BusOut from the spool', peer: S.target, peer_name: 'target (issue 9)' }, 'higher');
    record({ case: 'spool append', metric: 'µs per report (batches of 50)', unit: 'µs', agent: appendUs, agent_name: 'Spool.append', peer: 1_000_000 / S.target, peer_name: 'budget at 5,000 reports/s' }, 'lower');
  } finally {
    await upstream.close();
    await sink.server.shutdown(100);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
