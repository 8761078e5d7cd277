// The collector as its own process (AGENT_COLLECTOR_LISTEN, AGENT_REPORTER_ADDR).
import { loadConfig, Module, requireAddr, requireListen } from '@agent/option';
import { connectInternal, exitOnSignal, internalListener, internalToken, prepareDataDir, runMain, serveMetrics } from '@agent/grpc-kit';
import { createHostDrivers } from '@agent/kinds';
import { internalv1 } from '@agent/proto';
import { startCollector } from './collector';

runMain(Module.Collector, async (log, telemetry) => {
  const config = loadConfig();
  prepareDataDir(config);
  const token = internalToken(config);
  const reporter = connectInternal(internalv1.ReporterClient, requireAddr(config.reporterAddr, 'AGENT_REPORTER_ADDR'), token);
  const { server, service } = await startCollector(config, createHostDrivers(config), reporter, internalListener(config, requireListen(config.collectorListen, 'AGENT_COLLECTOR_LISTEN'), 'AGENT_COLLECTOR_LISTEN', token));
  const metricsEndpoint = await serveMetrics(config, log);
  exitOnSignal(log, [
    ['stop serving metrics', () => metricsEndpoint?.close()],
    ['stop sampling', () => service.close()],
    ['stop serving', () => server.shutdown(2_000)],
    ['flush traces', () => telemetry.shutdown()],
  ]);
});
