import * as os from 'node:os';
import { AGENT_VERSION, ConfigError, Driver as DriverNames, type AgentConfig, type DriverName } from '@agent/option';
import { connect, errorMessage, readToken, UnavailableError, type Logger, type Peer } from '@agent/grpc-kit';
import { sinkv1, type v1 } from '@agent/proto';
import { BaseDriver, NO_CAPABILITIES, type Capabilities, type PushResult, type ReportPayload } from './driver';

/**
 * The RPC client for Bus Out: an upstream agent.v1.ReportSink. Registers the
 * host at startup and pushes batches (reports, changes, gaps), each report
 * stamped with the host id.
 */
export class RpcDriver extends BaseDriver {
  readonly name: DriverName = DriverNames.Rpc;
  readonly capabilities: Capabilities = { ...NO_CAPABILITIES, report: true };
  private readonly peer: Peer<sinkv1.ReportSinkClient>;

  constructor(
    readonly address: string,
    private readonly timeoutMs = 5_000,
    token?: string,
  ) {
    super();
    this.peer = connect(sinkv1.ReportSinkClient, address, { token });
  }

  async health(): Promise<void> {
    try {
      await this.peer.waitReady(this.timeoutMs);
    } catch (err) {
      throw new UnavailableError(`upstream ${this.address} is not reachable`, { cause: err });
    }
  }

  /** Registers this host (id, hostname, version, size) with the upstream. */
  async registerHost(hostId: string): Promise<void> {
    const host: sinkv1.Host = { hostId, hostname: os.hostname(), agentVersion: AGENT_VERSION, cpus: os.cpus().length, memoryBytes: os.totalmem(), startedAt: new Date() };
    await this.peer.call('registerHost', host, { timeoutMs: this.timeoutMs });
  }

  /** One batch, one call: reports, changes, gaps and flows together, answered with what the upstream has stored. */
  override async push(payload: ReportPayload): Promise<PushResult> {
    const reports = payload.reports.map((r) => ({ ...(r as v1.Report), hostId: payload.hostId }));
    const changes = (payload.changes ?? []) as sinkv1.ObjectChange[];
    const gaps = (payload.gaps ?? []) as sinkv1.Gap[];
    const flows = (payload.flows ?? []) as sinkv1.SpooledFlow[];
    const res = await this.peer.call('push', { hostId: payload.hostId, reports, changes, gaps, flows }, { timeoutMs: this.timeoutMs });
    return { accepted: res.accepted, acks: res.acks.length > 0 ? new Map(res.acks.map((a) => [a.bootId, a.seq])) : undefined };
  }

  override async close(): Promise<void> {
    this.peer.close();
  }
}

function upstreamToken(file: string): string | undefined {
  if (file === '') return undefined;
  const token = readToken(file);
  if (token === undefined) throw new ConfigError('AGENT_UPSTREAM_TOKEN_FILE', `${file} does not exist`);
  return token;
}

/**
 * Startup's first step: the RPC driver for AGENT_UPSTREAM (none without one),
 * with this host registered. An upstream that is down is no reason not to
 * start: reports wait for it.
 */
export async function connectUpstream(config: AgentConfig, log: Logger): Promise<RpcDriver | undefined> {
  if (config.upstream === '') return undefined;
  const rpc = new RpcDriver(config.upstream, undefined, upstreamToken(config.upstreamTokenFile));
  await rpc.registerHost(config.hostId).then(
    () => log.info('host registered upstream', { upstream: config.upstream, hostId: config.hostId }),
    (err: unknown) => log.warn('upstream not reachable; reports will be retried', { upstream: config.upstream, reason: errorMessage(err) }),
  );
  return rpc;
}
