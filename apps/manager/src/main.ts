// The manager as its own process (AGENT_MANAGER_LISTEN).
import { loadConfig, Module, requireListen } from '@agent/option';
import { exitOnSignal, internalListener, prepareDataDir, runMain } from '@agent/grpc-kit';
import { createHostDrivers } from '@agent/drivers';
import { startManager } from './manager';

runMain(Module.Manager, async (log, telemetry) => {
  const config = loadConfig();
  prepareDataDir(config);
  const d = createHostDrivers(config);
  const server = await startManager(config, { container: d.docker, process: d.process, cgroup: d.cgroup, network: d.network }, internalListener(config, requireListen(config.managerListen, 'AGENT_MANAGER_LISTEN'), 'AGENT_MANAGER_LISTEN'));
  exitOnSignal(log, [
    ['stop serving', () => server.shutdown(2_000)],
    ['close docker events', () => d.docker.close()],
    ['flush traces', () => telemetry.shutdown()],
  ]);
});
