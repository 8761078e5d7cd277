// The server half of id-table.test.ts, run in its own process under
// --expose-gc --trace-gc-nvp: a Collector service behind startGrpcServer
// ("kit") or a bare grpc-js server ("bare"), with a full GC forced each
// second while the test's client keeps 16 calls in flight. Prints PORT <n>;
// V8 prints a line per GC.
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { GrpcService } from '@agent/option';
import { internalv1 } from '@agent/proto';
import { Role, TokenBook, tokenAuth } from './auth';
import { Logger } from './log';
import { startGrpcServer, unary } from './server';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const task = (r: internalv1.ObjectRef): internalv1.CollectTask => ({ objectId: r.objectId, intervalMs: 1000, forwarding: true });

async function kit(): Promise<number> {
  const log = new Logger('probe', 'error');
  const server = await startGrpcServer({
    listeners: [{ address: '127.0.0.1:0', authenticate: tokenAuth(new TokenBook([['probe-token', Role.Admin]])) }],
    log,
    services: [{ name: GrpcService.Collector, definition: internalv1.CollectorService, implementation: { getTask: unary(log, async (r: internalv1.ObjectRef) => task(r)) }, access: { roles: [Role.Admin] } }],
  });
  return server.port;
}

async function bare(): Promise<number> {
  const server = new Server();
  server.addService(internalv1.CollectorService, {
    getTask: (call: ServerUnaryCall<internalv1.ObjectRef, internalv1.CollectTask>, done: sendUnaryData<internalv1.CollectTask>) => done(null, task(call.request)),
  });
  return new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
}

void (process.argv[2] === 'bare' ? bare() : kit()).then((port) => {
  setInterval(gc, 1_000);
  process.stdout.write(`PORT ${port}\n`);
});
