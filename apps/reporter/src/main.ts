// The reporter as its own process (AGENT_REPORTER_LISTEN; AGENT_UPSTREAM for Bus Out).
import * as os from 'node:os';
import { loadConfig, Module, requireListen } from '@agent/option';
import { errorMessage, exitOnSignal, runMain } from '@agent/grpc-kit';
import { RpcDriver } from '@agent/drivers';
import { startReporter } from './reporter';

runMain(Module.Reporter, async (log, telemetry) => {
  const config = loadConfig();
  const rpc = config.upstream !== '' ? new RpcDriver(config.upstream) : undefined;
  await rpc
    ?.register({ hostId: config.hostId, hostname: os.hostname(), agentVersion: '0.1.0', cpus: os.cpus().length, memoryBytes: os.totalmem(), startedAt: new Date() })
    .catch((err: unknown) => log.warn('upstream not reachable; reports will be retried', { upstream: config.upstream, reason: errorMessage(err) }));
  const { server, service } = await startReporter(config, rpc, requireListen(config.reporterListen, 'AGENT_REPORTER_LISTEN'));
  exitOnSignal(log, [
    ['stop serving', () => server.shutdown(2_000)],
    ['flush reporters', () => service.close()],
    ['close upstream', () => rpc?.close()],
    ['flush traces', () => telemetry.shutdown()],
  ]);
});
