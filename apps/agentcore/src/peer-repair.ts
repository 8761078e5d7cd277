import { HOST_OBJECT_ID } from '@agent/option';
import { AlreadyExistsError, NotFoundError, type Logger } from '@agent/grpc-kit';
import { v1 } from '@agent/proto';
import type { Flows } from './flows';
import type { ObjectTable } from './objects';
import { PEER_TIMEOUT_MS, type Peers } from './peers';

/** The heartbeat, and the collector and reporter kept in step with the objects when they lose or outlive their state. */
export class PeerRepair {
  constructor(
    private readonly objects: ObjectTable,
    private readonly flows: Flows,
    private readonly peers: Peers,
    private readonly opts: { heartbeatMs: number },
    private readonly log: Logger,
  ) {}

  /** Heartbeat: a host collect task plus a host report task. */
  async startHeartbeat(): Promise<void> {
    const { collector, reporter } = this.peers;
    await collector.call('createTask', { objectId: HOST_OBJECT_ID, kind: v1.Kind.KIND_UNSPECIFIED, host: true, name: '', image: '', origin: v1.Origin.ORIGIN_UNSPECIFIED }, { timeoutMs: PEER_TIMEOUT_MS }).catch((err: unknown) => {
      if (!(err instanceof AlreadyExistsError)) throw err;
    });
    await collector.call('setPush', { objectId: HOST_OBJECT_ID, intervalMs: this.opts.heartbeatMs }, { timeoutMs: PEER_TIMEOUT_MS });
    await reporter.call('startReport', { objectId: HOST_OBJECT_ID }, { timeoutMs: PEER_TIMEOUT_MS });
    this.log.info('heartbeat running', { intervalMs: this.opts.heartbeatMs });
  }

  /**
   * A collector or reporter that restarted (separate processes) has lost its
   * tasks; the heartbeat's own task tells. Then it is given its state again,
   * as the seed re-pushes its config when the data plane reconnects.
   */
  async checkPeers(): Promise<void> {
    const { collector, reporter } = this.peers;
    const lostCollector = await collector.call('getTask', { objectId: HOST_OBJECT_ID }, { timeoutMs: PEER_TIMEOUT_MS }).then(
      () => false,
      (err: unknown) => err instanceof NotFoundError,
    );
    const reports = await reporter.call('listReports', {}, { timeoutMs: PEER_TIMEOUT_MS }).catch(() => undefined);
    const lostReporter = reports !== undefined && !reports.objectIds.includes(HOST_OBJECT_ID);
    if (!lostCollector && !lostReporter) return;
    this.log.warn('a peer restarted; pushing its state again', { collector: lostCollector, reporter: lostReporter });
    await this.startHeartbeat();
    for (const rec of this.objects.all()) {
      const objectId = rec.object.objectId;
      if (lostCollector && rec.hasCollectTask) await this.flows.giveCollectTask(rec);
      if (lostReporter && rec.object.pushing) await reporter.call('startReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
    }
  }

  /** Collect tasks with no live object behind them (a collector that outlived its agentcore's state) are removed. */
  async dropDeadTasks(): Promise<number> {
    const { objectIds } = await this.peers.collector.call('listTasks', {}, { timeoutMs: PEER_TIMEOUT_MS });
    let n = 0;
    for (const objectId of objectIds) {
      if (objectId === HOST_OBJECT_ID || this.objects.get(objectId)?.hasCollectTask) continue;
      await this.peers.collector.call('deleteTask', { objectId }, { timeoutMs: PEER_TIMEOUT_MS }).catch(() => undefined);
      n++;
    }
    return n;
  }
}
