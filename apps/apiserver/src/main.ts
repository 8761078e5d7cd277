// The apiserver as its own process (AGENT_LISTEN, AGENT_AGENTCORE_ADDR).
import { loadConfig, Module, requireAddr } from '@agent/option';
import { connectInternal, exitOnSignal, internalToken, prepareDataDir, runMain, serveMetrics } from '@agent/grpc-kit';
import { internalv1 } from '@agent/proto';
import { readsThrough, startApiServer } from './apiserver';
import { ObjectCopy } from './object-copy';

runMain(Module.ApiServer, async (log, telemetry) => {
  const config = loadConfig();
  prepareDataDir(config);
  const core = connectInternal(internalv1.AgentCoreClient, requireAddr(config.agentcoreAddr, 'AGENT_AGENTCORE_ADDR'), internalToken(config));
  // Get and List answer from a copy of agentcore's objects, kept by its watch: a read is one hop.
  const copy = new ObjectCopy(core, readsThrough(core), log);
  copy.start();
  const server = await startApiServer(config, core, copy);
  const metricsEndpoint = await serveMetrics(config, log);
  exitOnSignal(log, [
    ['stop serving metrics', () => metricsEndpoint?.close()],
    ['stop accepting calls', () => server.shutdown(5_000)],
    ['stop the object copy', () => copy.stop()],
    ['flush traces', () => telemetry.shutdown()],
  ]);
});
