// The manager as its own process (AGENT_MANAGER_LISTEN).
import { loadConfig, Module, requireListen } from '@agent/option';
import { exitOnSignal, internalListener, prepareDataDir, runMain, serveMetrics } from '@agent/grpc-kit';
import { createHostDrivers } from '@agent/kinds';
import { startManager } from './manager';

runMain(Module.Manager, async (log, telemetry) => {
  const config = loadConfig();
  prepareDataDir(config);
  const drivers = createHostDrivers(config);
  const server = await startManager(config, drivers, internalListener(config, requireListen(config.managerListen, 'AGENT_MANAGER_LISTEN'), 'AGENT_MANAGER_LISTEN'));
  const metricsEndpoint = await serveMetrics(config, log);
  exitOnSignal(log, [
    ['stop serving metrics', () => metricsEndpoint?.close()],
    ['stop serving', () => server.shutdown(2_000)],
    ['close drivers (docker events)', () => Promise.all([...drivers.objects.values()].map((d) => d.close())).then(() => undefined)],
    ['flush traces', () => telemetry.shutdown()],
  ]);
});
