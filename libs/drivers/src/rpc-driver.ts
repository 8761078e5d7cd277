import { Driver as DriverNames, type DriverName } from '@agent/option';
import { connect, UnavailableError, type Peer } from '@agent/grpc-kit';
import { sinkv1, type v1 } from '@agent/proto';
import { BaseDriver, NO_CAPABILITIES, type Capabilities, type ReportPayload } from './driver';

/**
 * The RPC client for Bus Out: an upstream agent.v1.ReportSink. Registers the
 * host at startup and pushes report batches, each stamped with the host id.
 */
export class RpcDriver extends BaseDriver {
  readonly name: DriverName = DriverNames.Rpc;
  readonly capabilities: Capabilities = { ...NO_CAPABILITIES, report: true };
  private readonly peer: Peer<sinkv1.ReportSinkClient>;

  constructor(
    readonly address: string,
    private readonly timeoutMs = 5_000,
  ) {
    super();
    this.peer = connect(sinkv1.ReportSinkClient, address);
  }

  async health(): Promise<void> {
    try {
      await this.peer.waitReady(this.timeoutMs);
    } catch (err) {
      throw new UnavailableError(`upstream ${this.address} is not reachable`, { cause: err });
    }
  }

  async register(host: sinkv1.Host): Promise<void> {
    await this.peer.call('registerHost', host, { timeoutMs: this.timeoutMs });
  }

  override async push(payload: ReportPayload): Promise<number> {
    let accepted = 0;
    if (payload.reports.length > 0) {
      const reports = payload.reports.map((r) => ({ ...(r as v1.Report), hostId: payload.hostId }));
      accepted += (await this.peer.call('push', { hostId: payload.hostId, reports }, { timeoutMs: this.timeoutMs })).accepted;
    }
    if (payload.changes && payload.changes.length > 0) {
      const changes = payload.changes as sinkv1.ObjectChange[];
      accepted += (await this.peer.call('pushChanges', { hostId: payload.hostId, changes }, { timeoutMs: this.timeoutMs })).accepted;
    }
    return accepted;
  }

  override async close(): Promise<void> {
    this.peer.close();
  }
}
