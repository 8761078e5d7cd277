// The reporter as its own process (AGENT_REPORTER_LISTEN; AGENT_UPSTREAM for Bus Out).
import { loadConfig, Module, requireListen } from '@agent/option';
import { exitOnSignal, internalListener, prepareDataDir, runMain, serveMetrics } from '@agent/grpc-kit';
import { connectUpstream } from '@agent/drivers';
import { startReporter } from './reporter';

runMain(Module.Reporter, async (log, telemetry) => {
  const config = loadConfig();
  prepareDataDir(config);
  const rpc = await connectUpstream(config, log);
  const { server, service } = await startReporter(config, rpc, internalListener(config, requireListen(config.reporterListen, 'AGENT_REPORTER_LISTEN'), 'AGENT_REPORTER_LISTEN'));
  const metricsEndpoint = await serveMetrics(config, log);
  exitOnSignal(log, [
    ['stop serving metrics', () => metricsEndpoint?.close()],
    ['stop serving', () => server.shutdown(2_000)],
    ['flush reporters', () => service.close()],
    ['close upstream', () => rpc?.close()],
    ['flush traces', () => telemetry.shutdown()],
  ]);
});
