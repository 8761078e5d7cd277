import type { ServerWritableStream } from '@grpc/grpc-js';
import { boundedWriter, errorMessage, type Logger, type Peer } from '@agent/grpc-kit';
import { type internalv1, policyv1 } from '@agent/proto';
import { enumLabel, metrics } from '@agent/telemetry';

/** Flows kept for ListFlows, the most recent ones. */
export const FLOW_HISTORY = 10_000;
export const LIST_DEFAULT = 100;
/** Flows a WatchFlows caller may have waiting to be sent; past it new ones are dropped for it (counted, logged) rather than held. */
const WATCH_BACKLOG = 10_000;

type FlowFilter = Pick<policyv1.ListFlowsRequest, 'objectId' | 'verdicts'>;

/**
 * The flows of this host: what the collector read from the dataplane's log,
 * named (objects, groups, mode) by the policy engine, kept for ListFlows,
 * streamed to WatchFlows and handed on (Bus Out). The log is followed while
 * the dataplane is present: no table, no log reader.
 */
export class Traffic {
  private readonly history: policyv1.Flow[] = [];
  private readonly watchers = new Set<{ filter: FlowFilter; write: (f: policyv1.Flow) => void }>();
  private stream: { cancel(): void } | undefined;
  private active = false;
  private retry: NodeJS.Timeout | undefined;
  private failures = 0;
  /** Batches are named one after another, in the order they came. */
  private naming: Promise<void> = Promise.resolve();

  constructor(
    private readonly collector: Peer<internalv1.CollectorClient>,
    /** Names the ends of logged flows (and learns what Discover saw). */
    private readonly name: (logged: readonly internalv1.LoggedFlow[]) => Promise<policyv1.Flow[]>,
    private readonly onFlows: (flows: readonly policyv1.Flow[]) => void,
    private readonly log: Logger,
  ) {}

  /** Follows the dataplane's log while on. */
  setActive(on: boolean): void {
    if (on === this.active) return;
    this.active = on;
    if (on) this.follow();
    else {
      clearTimeout(this.retry);
      this.stream?.cancel();
      this.stream = undefined;
    }
  }

  /** The most recent flows that match, oldest first. */
  list(req: policyv1.ListFlowsRequest): policyv1.Flow[] {
    const limit = req.limit || LIST_DEFAULT;
    const out: policyv1.Flow[] = [];
    for (let i = this.history.length - 1; i >= 0 && out.length < limit; i--) {
      const f = this.history[i]!;
      if (matches(f, req)) out.push(f);
    }
    return out.reverse();
  }

  /** Streams matching flows from now until the caller cancels. */
  async watch(req: policyv1.WatchFlowsRequest, call: ServerWritableStream<policyv1.WatchFlowsRequest, policyv1.Flow>): Promise<void> {
    const w = { filter: req, write: boundedWriter(call, { backlog: WATCH_BACKLOG, everyDrops: 1_000, onDrop: (dropped) => this.log.warn('a flow watcher is not reading; flows dropped for it', { dropped }) }) };
    this.watchers.add(w);
    await new Promise<void>((resolve) => {
      call.on('cancelled', resolve);
      call.on('close', resolve);
    });
    this.watchers.delete(w);
  }

  private follow(): void {
    if (!this.active) return;
    const stream = this.collector.client.watchFlows({}, this.collector.traceMetadata());
    this.stream = stream;
    stream.on('data', (b: internalv1.FlowBatch) => {
      this.failures = 0;
      this.naming = this.naming.then(() => this.take(b.flows)).catch((err: unknown) => this.log.warn('flows not recorded', { reason: errorMessage(err) }));
    });
    stream.on('error', (err: Error) => {
      if (!this.active || this.stream !== stream) return;
      // A host without ulogd enforces all the same: said once, then tried again now and then.
      const delay = Math.min(250 * 2 ** this.failures++, 30_000);
      (this.failures === 1 ? this.log.warn : this.log.debug).call(this.log, 'flow log not readable; retrying', { reason: err.message, retryMs: delay });
      this.retry = setTimeout(() => this.follow(), delay);
      this.retry.unref();
    });
  }

  private async take(logged: readonly internalv1.LoggedFlow[]): Promise<void> {
    if (logged.length === 0) return;
    const flows = await this.name(logged);
    for (const f of flows) {
      metrics.flows.inc({ verdict: enumLabel(policyv1.Verdict, f.verdict, 'VERDICT_') }, f.count || 1);
      this.history.push(f);
      for (const w of this.watchers) if (matches(f, w.filter)) w.write(f);
    }
    if (this.history.length > FLOW_HISTORY) this.history.splice(0, this.history.length - FLOW_HISTORY);
    this.onFlows(flows);
  }
}

function matches(f: policyv1.Flow, filter: FlowFilter): boolean {
  if (filter.objectId !== '' && f.srcObjectId !== filter.objectId && f.dstObjectId !== filter.objectId) return false;
  return filter.verdicts.length === 0 || filter.verdicts.includes(f.verdict);
}
