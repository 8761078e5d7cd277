// The embedded default: all five services in one process. Each is a real
// gRPC server (health, reflection, grpcurl); between them, unary calls go
// straight to the handler (LocalPeer) and streams over unix sockets.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadConfig, Module } from '@agent/option';
import { exitOnSignal, internalListener, internalToken, prepareDataDir, privateDir, runMain, serveMetrics, type Listener } from '@agent/grpc-kit';
import { connectUpstream } from '@agent/drivers';
import { createHostDrivers } from '@agent/kinds';
import { internalv1 } from '@agent/proto';
import { startManager } from '@agent/manager';
import { startReporter } from '@agent/reporter';
import { startCollector } from '@agent/collector';
import { startAgentCore } from '@agent/agentcore';
import { startApiServer } from '@agent/apiserver';

runMain(Module.Daemon, async (log, telemetry) => {
  const config = loadConfig();
  prepareDataDir(config);
  /**
   * The configured address, or (left at its default) a unix socket in a 0700
   * directory under the data directory. Either way only the internal token gets in.
   */
  const token = internalToken(config);
  const internalListen = (configured: string, variable: string, module: string): Listener => {
    const sock = path.join(config.dataDir, 'run', `${module}.sock`);
    if (configured !== '127.0.0.1:0' || sock.length > 100) return internalListener(config, configured, variable, token); // sun_path is 108 bytes
    privateDir(path.dirname(sock));
    fs.rmSync(sock, { force: true }); // left by a previous run
    return internalListener(config, `unix:${sock}`, variable, token);
  };

  // 1. The RPC driver connects to the upstream sink and registers the host.
  const rpc = await connectUpstream(config, log);

  // 2. Manager, reporter, collector, then agentcore, then the apiserver last,
  //    so that no call is taken before the flows can run. The four inside
  //    listen on unix sockets unless told otherwise.
  const drivers = createHostDrivers(config);
  const manager = await startManager(config, drivers, internalListen(config.managerListen, 'AGENT_MANAGER_LISTEN', Module.Manager));
  const reporter = await startReporter(config, rpc, internalListen(config.reporterListen, 'AGENT_REPORTER_LISTEN', Module.Reporter));
  // Unary calls between services of this one process skip the network (still
  // through each server's wrapper: same statuses, same spans); streams and
  // every outside client use the real gRPC servers.
  const collector = await startCollector(config, drivers, reporter.server.localPeer(internalv1.ReporterClient, token), internalListen(config.collectorListen, 'AGENT_COLLECTOR_LISTEN', Module.Collector));
  const core = await startAgentCore(config, {
    manager: manager.localPeer(internalv1.ManagerClient, token),
    collector: collector.server.localPeer(internalv1.CollectorClient, token),
    reporter: reporter.server.localPeer(internalv1.ReporterClient, token),
  }, internalListen(config.agentcoreListen, 'AGENT_AGENTCORE_LISTEN', Module.AgentCore));
  // Get and List read agentcore's table directly: in this process a read is no hop.
  const api = await startApiServer(config, core.server.localPeer(internalv1.AgentCoreClient, token), core.core);
  const metricsEndpoint = await serveMetrics(config, log);
  log.info('agent ready', {
    apiserver: api.addresses,
    tokens: config.apiListen !== '' ? config.tokenDir : null,
    hostId: config.hostId,
    dataDir: config.dataDir,
    reportFile: config.reportFile,
    upstream: config.upstream || null,
    cgroup: drivers.cgroup.fs.version,
    metrics: metricsEndpoint?.url ?? null,
  });

  exitOnSignal(log, [
    ['stop serving metrics', () => metricsEndpoint?.close()],
    ['stop accepting calls', () => api.shutdown(2_000)],
    ['finish queued events', () => core.core.drain(5_000)],
    ['stop cluster sync', () => core.cluster.stop()],
    ['close the store', () => core.store.close()],
    ['stop agentcore', () => core.server.shutdown(500)],
    ['stop collector', async () => {
      await collector.service.close();
      await collector.server.shutdown(500);
    }],
    ['flush reporters', () => reporter.service.close()],
    ['stop reporter', () => reporter.server.shutdown(500)],
    ['stop manager', () => manager.shutdown(500)],
    // Docker's records still to send (up to 2 s), then the event streams.
    ['close drivers', () => Promise.all([...drivers.objects.values()].map((d) => d.close())).then(() => undefined)],
    ['close upstream', () => rpc?.close()],
    ['flush traces', () => telemetry.shutdown()],
  ]);
}, [Module.ApiServer, Module.AgentCore, Module.Manager, Module.Collector, Module.Reporter]);
