// Calls between the agent's own services (five processes): the pipe (one
// long-lived stream per peer, agent.internal.v1.Pipe) beside the unary grpc-js
// calls it replaced, to the same internal service in a process of its own,
// in alternating rounds. Calls one after the other with a millisecond between
// them, as the services of one update call each other: each call wakes both
// processes. CPU is the caller's and the service's, per call.
import { connect, connectInternal, Logger, Role, startGrpcServer, TokenBook, tokenAuth, unary, INTERNAL_ONLY, type Peer } from '@agent/grpc-kit';
import { GrpcService } from '@agent/option';
import { internalv1 } from '@agent/proto';
import { cpuSeconds } from '@agent/testkit';
import { spawnServer } from './child-server';
import type { StoreBenchKit } from './store-bench';

const TOKEN = 'bench-internal-token';

/** The service's side: node pipe-bench.js serve; prints its address. */
export async function servePipeBench(): Promise<void> {
  const log = new Logger('bench-pipe', 'error');
  const server = await startGrpcServer({
    listeners: [{ address: '127.0.0.1:0', authenticate: tokenAuth(new TokenBook([[TOKEN, Role.Internal]])) }],
    log,
    services: [
      {
        name: GrpcService.Collector,
        definition: internalv1.CollectorService,
        implementation: { getTask: unary(log, async (r: internalv1.ObjectRef) => ({ objectId: r.objectId, intervalMs: 1000, forwarding: true })) },
        access: INTERNAL_ONLY,
      },
    ],
  });
  process.stdout.write(`${server.address}\n`);
  process.on('SIGTERM', () => void server.shutdown(500).then(() => process.exit(0)));
}

export async function pipeCase(kit: StoreBenchKit, opts: { quick: boolean }): Promise<void> {
  const rounds = opts.quick ? 2 : 6;
  const perRound = opts.quick ? 200 : 500;
  kit.log(`internal calls: ${rounds * perRound} each on the pipe and as unary calls, to a service in another process, 1 ms apart, in alternating rounds of ${perRound}`);
  const service = await spawnServer('pipe-bench-main.js');
  const pipe = connectInternal(internalv1.CollectorClient, service.address, TOKEN);
  const plain = connect(internalv1.CollectorClient, service.address, { token: TOKEN });
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  const measure = async (peer: Peer<internalv1.CollectorClient>, n: number, into?: { wall: number[]; cpu: number }): Promise<void> => {
    const c0 = process.cpuUsage();
    const s0 = cpuSeconds(service.pid);
    for (let i = 0; i < n; i++) {
      const t0 = kit.nowMs();
      await peer.call('getTask', { objectId: `o${i}` });
      into?.wall.push(kit.nowMs() - t0);
      await sleep(1);
    }
    const c = process.cpuUsage(c0);
    if (into) into.cpu += (c.user + c.system) / 1000 + (cpuSeconds(service.pid) - s0) * 1000;
  };
  try {
    await measure(pipe, 300);
    await measure(plain, 300);
    const piped = { wall: [] as number[], cpu: 0 };
    const unaryCalls = { wall: [] as number[], cpu: 0 };
    for (let r = 0; r < rounds; r++) {
      await measure(pipe, perRound, piped);
      await measure(plain, perRound, unaryCalls);
    }
    const n = rounds * perRound;
    const peerName = 'unary grpc-js call (what the pipe replaced)';
    kit.record({ case: 'internal_call', metric: 'cpu_per_call', unit: 'us', agent: (piped.cpu / n) * 1000, peer: (unaryCalls.cpu / n) * 1000, peer_name: peerName, note: 'caller + service, two processes' }, 'lower');
    kit.record({ case: 'internal_call', metric: 'p50_latency', unit: 'ms', agent: kit.pct(piped.wall, 50), peer: kit.pct(unaryCalls.wall, 50), peer_name: peerName }, 'lower');
    kit.record({ case: 'internal_call', metric: 'p99_latency', unit: 'ms', agent: kit.pct(piped.wall, 99), peer: kit.pct(unaryCalls.wall, 99), peer_name: peerName }, 'lower');
  } finally {
    pipe.close();
    plain.close();
    await service.stop();
  }
}
