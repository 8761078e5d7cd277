// agentcore as its own process (AGENT_AGENTCORE_LISTEN; the manager, collector and reporter addresses).
import { loadConfig, Module, requireAddr, requireListen } from '@agent/option';
import { connectInternal, exitOnSignal, internalListener, internalToken, prepareDataDir, runMain, serveMetrics } from '@agent/grpc-kit';
import { internalv1 } from '@agent/proto';
import { startAgentCore } from './agentcore';

runMain(Module.AgentCore, async (log, telemetry) => {
  const config = loadConfig();
  prepareDataDir(config);
  const token = internalToken(config);
  const { server, core, cluster, store } = await startAgentCore(
    config,
    {
      manager: connectInternal(internalv1.ManagerClient, requireAddr(config.managerAddr, 'AGENT_MANAGER_ADDR'), token),
      collector: connectInternal(internalv1.CollectorClient, requireAddr(config.collectorAddr, 'AGENT_COLLECTOR_ADDR'), token),
      reporter: connectInternal(internalv1.ReporterClient, requireAddr(config.reporterAddr, 'AGENT_REPORTER_ADDR'), token),
    },
    internalListener(config, requireListen(config.agentcoreListen, 'AGENT_AGENTCORE_LISTEN'), 'AGENT_AGENTCORE_LISTEN', token),
  );
  const metricsEndpoint = await serveMetrics(config, log);
  exitOnSignal(log, [
    ['stop serving metrics', () => metricsEndpoint?.close()],
    ['finish queued events', () => core.drain(5_000)],
    ['stop cluster sync', () => cluster.stop()],
    ['close the store', () => store.close()],
    ['stop serving', () => server.shutdown(2_000)],
    ['flush traces', () => telemetry.shutdown()],
  ]);
});
