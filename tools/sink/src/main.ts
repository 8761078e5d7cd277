// A small upstream (Bus Out) for the agent: serves agent.v1.ReportSink and
// prints every host registration, report, flow, change and gap it receives as JSON
// Lines on stdout, each with its boot id and seq. It acknowledges the highest
// seq up to which it has everything, and prints a repeat as "duplicate"
// instead. Run it, then start the agent with AGENT_UPSTREAM=<its address>.
//
//   npm run sink -- --listen 127.0.0.1:50070 [--token-file sink.token] [--state sink.json]
//
// With --state it keeps what it has stored across its own restarts.
// With --token-file (made if absent, 0600) only callers that present it get
// in: give the same file to the agent as AGENT_UPSTREAM_TOKEN_FILE.
import { GrpcService } from '@agent/option';
import { Logger, Role, TokenBook, ensureToken, startGrpcServer, tokenAuth, unary, exitOnSignal, type Authenticate } from '@agent/grpc-kit';
import { policyv1, sinkv1, v1 } from '@agent/proto';
import { Ledger } from './ledger';

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
  const ledger = new Ledger(arg('state', ''));
  const implementation: sinkv1.ReportSinkServer = {
    registerHost: unary(log, async (h: sinkv1.Host) => {
      out({ type: 'host', host: sinkv1.Host.toJSON(h) });
      return {};
    }),
    push: unary(log, async (b: sinkv1.ReportBatch) => {
      // Items from the agent's spool carry (boot_id, seq): taken in seq order, duplicates dropped.
      const items = [
        ...b.reports.map((r) => ({ bootId: r.bootId, seq: r.seq, line: { type: 'report', report: v1.Report.toJSON(r) } })),
        ...b.changes.map((c) => ({ bootId: c.bootId, seq: c.seq, line: { type: 'change', change: sinkv1.ObjectChange.toJSON(c) } })),
        ...b.flows.map((f) => ({ bootId: f.bootId, seq: f.seq, line: { type: 'flow', flow: policyv1.Flow.toJSON(f.flow ?? policyv1.Flow.fromPartial({})) } })),
      ].sort((x, y) => (x.bootId === y.bootId ? x.seq - y.seq : 0));
      const numbered = items.filter((i) => i.bootId !== '');
      const { fresh, acks } = ledger.take(b.hostId, numbered, b.gaps);
      for (const g of b.gaps) out({ type: 'gap', hostId: b.hostId, bootId: g.bootId, seq: g.seq, count: g.count, dropped: g.dropped });
      let accepted = 0;
      let k = 0;
      for (const i of items) {
        const isNew = i.bootId === '' || fresh[k++] === true;
        if (isNew) accepted++;
        out(isNew ? { ...i.line, hostId: b.hostId, bootId: i.bootId, seq: i.seq } : { type: 'duplicate', hostId: b.hostId, bootId: i.bootId, seq: i.seq });
      }
      return { accepted, acks };
    }),
    pushChanges: unary(log, async (b: sinkv1.ObjectChangeBatch) => {
      for (const c of b.changes) out({ type: 'change', hostId: b.hostId, change: sinkv1.ObjectChange.toJSON(c) });
      return { accepted: b.changes.length, acks: [] };
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
