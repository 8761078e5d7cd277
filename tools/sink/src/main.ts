// A small upstream (Bus Out) for the agent: serves agent.v1.ReportSink and
// prints every host registration and report it receives as JSON Lines on
// stdout. Run it, then start the agent with AGENT_UPSTREAM=<its address>.
//
//   npm run sink -- --listen 127.0.0.1:50070 [--token-file sink.token]
//
// With --token-file (made if absent, 0600) only callers that present it get
// in: give the same file to the agent as AGENT_UPSTREAM_TOKEN_FILE.
import { GrpcService } from '@agent/option';
import { Logger, Role, TokenBook, ensureToken, startGrpcServer, tokenAuth, unary, exitOnSignal, type Authenticate } from '@agent/grpc-kit';
import { sinkv1, v1 } from '@agent/proto';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : def;
}

/** The token file's holders, or (without one, for a local try-out) anyone. */
function sinkAuth(log: Logger): Authenticate {
  const file = arg('token-file', '');
  if (file !== '') return tokenAuth(new TokenBook([[ensureToken(file), Role.Internal]]));
  log.warn('no --token-file: any caller may push');
  return () => ({ role: Role.Internal, via: 'token' });
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
    listeners: [{ address: arg('listen', '127.0.0.1:50070'), authenticate: sinkAuth(log) }],
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
