import { errorMessage, FailedPreconditionError, UnavailableError } from '@agent/grpc-kit';
import { FlowLog, LogVerdict, parseLogPrefix, type LogVerdictCode, type NflogPacket } from '@agent/drivers';
import { type internalv1, policyv1 } from '@agent/proto';

export interface FlowSourceOptions {
  /** NFLOG group the dataplane logs new connections to (AGENT_NFLOG_GROUP). */
  readonly group: number;
  /** ulogd's private dir (<dataDir>/flowlog). */
  readonly dir: string;
  /** How long a window lasts from its first packet (AGENT_FLOW_WINDOW_MS). */
  readonly windowMs: number;
  /** Distinct flows a window holds at most; one more flushes it early. Default: 10,000. */
  readonly maxKeys?: number;
  /** Default: 'ulogd' from PATH; read at every start. */
  readonly ulogdPath?: string;
  /** Told when ulogd is restarted, a subscriber throws, or the flow log fails to close. */
  readonly onError?: (message: string) => void;
}

export type FlowBatchHandler = (batch: internalv1.FlowBatch) => void;

const DEFAULT_MAX_KEYS = 10_000;

const VERDICTS: Record<LogVerdictCode, policyv1.Verdict> = {
  [LogVerdict.Allowed]: policyv1.Verdict.VERDICT_ALLOWED,
  [LogVerdict.Denied]: policyv1.Verdict.VERDICT_DENIED,
  [LogVerdict.Violation]: policyv1.Verdict.VERDICT_VIOLATION,
  [LogVerdict.Learned]: policyv1.Verdict.VERDICT_LEARNED,
};

/**
 * The dataplane's flow log, aggregated: packets whose NFLOG prefix the dataplane wrote are
 * grouped per (src, dst, protocol, dst port, verdict, rule, path) over a window that opens at
 * the first packet after the previous flush and is flushed windowMs later (one timer), as one
 * FlowBatch to every subscriber. ulogd runs only while someone subscribes.
 */
export class FlowSource {
  private readonly subs = new Set<{ readonly onBatch: FlowBatchHandler }>();
  private flowLog: FlowLog | undefined;
  private starting: Promise<void> | undefined;
  /** The previous FlowLog's close: a new one must not start before (same group, same socket path). */
  private stopping: Promise<void> = Promise.resolve();
  private closed = false;
  /** The open window's flows by key; a LoggedFlow whose flow is always set. */
  private readonly window = new Map<string, { readonly flow: policyv1.Flow; readonly path: string }>();
  private timer: NodeJS.Timeout | undefined;
  private seen = 0;
  private skipped = 0;
  private emitted = 0;
  private sent = 0;

  constructor(private readonly opts: FlowSourceOptions) {}

  /**
   * Batches from now on. The first subscriber starts the flow log (concurrent ones share that
   * start); if it fails the promise rejects (FailedPreconditionError) and the next subscribe tries
   * again. Call the returned function to unsubscribe: the last one stops the flow log.
   * Every subscriber gets the same batch object: do not change it.
   */
  async subscribe(onBatch: FlowBatchHandler): Promise<() => void> {
    if (this.closed) throw new UnavailableError('flow source is closed');
    const sub = { onBatch };
    this.subs.add(sub);
    try {
      await this.start();
    } catch (err) {
      this.subs.delete(sub);
      throw err;
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.subs.delete(sub);
      if (this.subs.size === 0) this.stop();
    };
  }

  /** Flushes the open window to the subscribers, drops them, and stops the flow log. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.flush();
      this.subs.clear();
      this.stop();
    }
    await this.starting?.catch(() => undefined);
    await this.stopping;
  }

  /** Whether ulogd runs (someone subscribes). */
  get running(): boolean {
    return this.flowLog !== undefined;
  }

  /** Packets the flow log delivered while someone subscribed, parseable or not. */
  get packets(): number {
    return this.seen;
  }

  /** Packets skipped because their prefix is not one the dataplane writes. */
  get unparsed(): number {
    return this.skipped;
  }

  /** Flows emitted (each counting one or more packets). */
  get flows(): number {
    return this.emitted;
  }

  /** Batches emitted (windows flushed with at least one flow). */
  get batches(): number {
    return this.sent;
  }

  private start(): Promise<void> {
    if (this.flowLog) return Promise.resolve();
    this.starting ??= (async () => {
      try {
        await this.stopping;
        let flowLog: FlowLog;
        try {
          flowLog = await FlowLog.start({
            group: this.opts.group,
            dir: this.opts.dir,
            onPacket: (p) => this.add(p),
            onError: (m) => this.opts.onError?.(m),
            ...(this.opts.ulogdPath !== undefined ? { ulogdPath: this.opts.ulogdPath } : {}),
          });
        } catch (err) {
          throw new FailedPreconditionError(`flow log (NFLOG group ${this.opts.group}) did not start: ${errorMessage(err)}`, { cause: err });
        }
        if (this.closed) {
          await flowLog.close();
          throw new UnavailableError('flow source is closed');
        }
        this.flowLog = flowLog;
      } finally {
        this.starting = undefined;
      }
    })();
    return this.starting;
  }

  /** Stops the flow log in the background; what the open window holds is dropped (nobody to tell). */
  private stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.window.clear();
    const flowLog = this.flowLog;
    if (!flowLog) return;
    this.flowLog = undefined;
    this.stopping = this.stopping.then(() => flowLog.close()).catch((err: unknown) => this.opts.onError?.(`flow log close failed: ${errorMessage(err)}`));
  }

  private add(p: NflogPacket): void {
    if (this.subs.size === 0) return; // a late packet of a flow log being stopped
    this.seen++;
    const prefix = parseLogPrefix(p.prefix);
    if (!prefix) {
      this.skipped++;
      return;
    }
    const dstPort = p.dstPort ?? 0;
    const key = `${p.srcIp} ${p.dstIp} ${p.protocol} ${dstPort} ${prefix.verdict} ${prefix.ruleId} ${prefix.path}`;
    const open = this.window.get(key)?.flow;
    if (open) {
      open.count++;
      if (open.timestamp && p.at < open.timestamp) open.timestamp = p.at; // the kernel's order, should ulogd's differ
      return;
    }
    if (this.window.size >= (this.opts.maxKeys ?? DEFAULT_MAX_KEYS)) this.flush();
    const flow: policyv1.Flow = {
      timestamp: p.at,
      srcObjectId: '',
      dstObjectId: '',
      srcGroup: '',
      dstGroup: '',
      srcIp: p.srcIp,
      dstIp: p.dstIp,
      protocol: p.protocol,
      dstPort,
      verdict: VERDICTS[prefix.verdict],
      ruleId: prefix.ruleId,
      mode: policyv1.Mode.MODE_UNSPECIFIED,
      count: 1,
      hostId: '',
    };
    this.window.set(key, { flow, path: prefix.path });
    this.timer ??= setTimeout(() => this.flush(), this.opts.windowMs);
  }

  /** Sends the open window, if it holds anything, as one batch; the next packet opens a new one. */
  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.window.size === 0) return;
    const batch: internalv1.FlowBatch = { flows: [...this.window.values()] };
    this.window.clear();
    this.emitted += batch.flows.length;
    this.sent++;
    for (const s of [...this.subs]) {
      try {
        s.onBatch(batch);
      } catch (err) {
        this.opts.onError?.(`flow subscriber threw: ${errorMessage(err)}`);
      }
    }
  }
}
