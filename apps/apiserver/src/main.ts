// The apiserver as its own process (AGENT_LISTEN, AGENT_AGENTCORE_ADDR).
import { loadConfig, Module, requireAddr } from '@agent/option';
import { connect, exitOnSignal, internalToken, prepareDataDir, runMain, serveMetrics } from '@agent/grpc-kit';
import { internalv1 } from '@agent/proto';
import { startApiServer } from './apiserver';

runMain(Module.ApiServer, async (log, telemetry) => {
  const config = loadConfig();
  prepareDataDir(config);
  const server = await startApiServer(config, connect(internalv1.AgentCoreClient, requireAddr(config.agentcoreAddr, 'AGENT_AGENTCORE_ADDR'), { token: internalToken(config) }));
  const metricsEndpoint = await serveMetrics(config, log);
  exitOnSignal(log, [
    ['stop serving metrics', () => metricsEndpoint?.close()],
    ['stop accepting calls', () => server.shutdown(5_000)],
    ['flush traces', () => telemetry.shutdown()],
  ]);
});
