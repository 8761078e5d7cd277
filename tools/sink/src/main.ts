// A small upstream (Bus Out) for the agent: serves agent.v1.ReportSink and
// prints every host registration and report it receives as JSON Lines on
// stdout. Run it, then start the agent with AGENT_UPSTREAM=<its address>.
//
//   npm run sink -- --listen 127.0.0.1:50070
import { GrpcService } from '@agent/option';
import { Logger, Role, startGrpcServer, unary, exitOnSignal } from '@agent/grpc-kit';
import { sinkv1, v1 } from '@agent/proto';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : def;
}

async function main(): Promise<void> {
  const log = new Logger('sink');
  const out = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + '\n');
  const implementation: sinkv1.ReportSinkServer = {
    registerHost: unary(log, async (h: sinkv1.Host) => {
      out({ type: 'host', host: sinkv1.Host.toJSON(h) });
      return {};
    }),
    push: unary(log, async (b: sinkv1.ReportBatch) => {
      for (const r of b.reports) out({ type: 'report', hostId: b.hostId, report: v1.Report.toJSON(r) });
      return { accepted: b.reports.length };
    }),
    pushChanges: unary(log, async (b: sinkv1.ObjectChangeBatch) => {
      for (const c of b.changes) out({ type: 'change', hostId: b.hostId, change: sinkv1.ObjectChange.toJSON(c) });
      return { accepted: b.changes.length };
    }),
  };
  const server = await startGrpcServer({
    // A local try-out sink: every caller may push (the agent is its client, on loopback).
    listeners: [{ address: arg('listen', '127.0.0.1:50070'), authenticate: () => ({ role: Role.Internal, via: 'token' }) }],
    log,
    services: [{ name: GrpcService.ReportSink, definition: sinkv1.ReportSinkService, implementation, access: { roles: [Role.Internal] } }],
  });
  server.health.setAll(true);
  out({ type: 'listening', address: server.address });
  exitOnSignal(log, [['stop', () => server.shutdown(1_000)]]);
}

main().catch((err: unknown) => {
  new Logger('sink').error('sink failed', { err });
  process.exit(1);
});
