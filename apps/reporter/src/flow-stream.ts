import { DiscardPolicy, nanos, RetentionPolicy, StorageType, type JetStreamClient, type NatsConnection, type NatsError } from 'nats';
import { errorMessage, type Logger } from '@agent/grpc-kit';
import { policyv1 } from '@agent/proto';
import { connectNats } from '@agent/store';

/** The JetStream stream every agent of a cluster publishes its flows to. */
export const FLOW_STREAM = 'AGENT_FLOWS';
export const FLOW_SUBJECTS = 'agent.flows.>';
/** The stream's limits when an agent creates it; a stream that exists is left as it is. */
export const FLOW_STREAM_LIMITS = { maxAgeMs: 24 * 60 * 60 * 1000, maxBytes: 1024 * 1024 * 1024 } as const;

/** Where one host's flows go: agent.flows.<host id>, the id as one subject token (other than letters, digits, "-" and "_": "_"). */
export function flowSubject(hostId: string): string {
  return `agent.flows.${hostId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

/** Makes the stream if it is missing; leaves one that exists (whoever made it, with whatever limits) alone. */
export async function ensureFlowStream(nc: NatsConnection): Promise<'created' | 'exists'> {
  const jsm = await nc.jetstreamManager();
  try {
    await jsm.streams.info(FLOW_STREAM);
    return 'exists';
  } catch (err) {
    if (!streamNotFound(err)) throw err;
  }
  try {
    await jsm.streams.add({
      name: FLOW_STREAM,
      subjects: [FLOW_SUBJECTS],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: nanos(FLOW_STREAM_LIMITS.maxAgeMs),
      max_bytes: FLOW_STREAM_LIMITS.maxBytes,
      discard: DiscardPolicy.Old,
    });
    return 'created';
  } catch (err) {
    // Another agent made it in the meantime: it is there, as that agent made it.
    await jsm.streams.info(FLOW_STREAM).catch(() => Promise.reject(err));
    return 'exists';
  }
}

function streamNotFound(err: unknown): boolean {
  return (err as NatsError | undefined)?.api_error?.err_code === 10059 || (err instanceof Error && err.message === 'stream not found');
}

export interface FlowStreamOptions {
  /** nats://host:port[,...]: AGENT_CLUSTER_URL. */
  readonly url: string;
  readonly hostId: string;
  /** Publishes awaiting their acknowledgement, at most. Default 256. */
  readonly maxInFlight?: number;
  /** Flows waiting for a publish slot (or for the first connection), at most; beyond it the oldest go, counted. Default 10000. */
  readonly maxQueued?: number;
}

export interface FlowStreamStats {
  /** Flows the stream acknowledged. */
  readonly published: number;
  /** Publishes that failed (no acknowledgement, an error): those flows are not in the stream. */
  readonly failed: number;
  /** Flows dropped from a full queue. */
  readonly dropped: number;
  readonly queued: number;
  readonly inFlight: number;
}

const enc = new TextEncoder();
/** Warnings about lost flows, at most one per this long (each with the running counts). */
const WARN_EVERY_MS = 10_000;

/**
 * The cluster's flow stream (a cluster store on NATS): every flow this agent
 * records is published as JSON to agent.flows.<host> on the JetStream stream
 * AGENT_FLOWS, made if missing. Its own connection, opened (and retried) in
 * the background. publish() only queues: acknowledgements are awaited in the
 * background with a bounded number in flight, and what fails or does not fit
 * is counted and logged, never waited for. Best effort: the durable path
 * upstream is Bus Out.
 */
export class FlowStream {
  readonly subject: string;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private queue: policyv1.Flow[] = [];
  private inFlight = 0;
  private published = 0;
  private failed = 0;
  private dropped = 0;
  private closed = false;
  private warnedAt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private idle: (() => void) | undefined;
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  /** Settles once the stream is there (true) or the stream is closed first (false). */
  readonly ready: Promise<boolean>;

  constructor(
    private readonly opts: FlowStreamOptions,
    private readonly log: Logger,
  ) {
    this.subject = flowSubject(opts.hostId);
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 256);
    this.maxQueued = Math.max(1, opts.maxQueued ?? 10_000);
    this.ready = this.open();
  }

  /** Queues flows for the stream; returns at once. */
  publish(flows: readonly policyv1.Flow[]): void {
    if (this.closed) return;
    for (const f of flows) this.queue.push(f);
    const over = this.queue.length - this.maxQueued;
    if (over > 0) {
      this.queue.splice(0, over);
      this.dropped += over;
      this.warn('flow stream queue full; oldest flows dropped', { count: over });
    }
    this.pump();
  }

  stats(): FlowStreamStats {
    return { published: this.published, failed: this.failed, dropped: this.dropped, queued: this.queue.length, inFlight: this.inFlight };
  }

  /** Stops taking flows; what is queued or in flight gets at most timeoutMs; then the connection drains and closes. */
  async close(timeoutMs = 2_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.wake?.();
    const timeout = new Promise<void>((r) => setTimeout(r, timeoutMs).unref());
    await Promise.race([this.ready, timeout]);
    if (this.nc && (this.queue.length > 0 || this.inFlight > 0)) await Promise.race([new Promise<void>((r) => (this.idle = r)), timeout]);
    const lost = this.queue.length;
    this.queue = [];
    if (lost > 0) this.dropped += lost;
    const st = this.stats();
    if (lost > 0 || st.failed > 0 || st.dropped > 0) this.log.info('flow stream closed', { ...st, lostAtClose: lost });
    const nc = this.nc;
    this.nc = undefined;
    this.js = undefined;
    if (nc) await nc.drain().catch(() => nc.close());
  }

  // ---- inside

  /** Connects and makes sure of the stream, again and again (backing off) until it works or the stream is closed. */
  private async open(): Promise<boolean> {
    let delay = 500;
    while (!this.closed) {
      let nc: NatsConnection | undefined;
      try {
        nc = await connectNats(this.opts.url, `agent-reporter-${this.opts.hostId}`);
        const made = await ensureFlowStream(nc);
        if (this.closed) break;
        this.nc = nc;
        this.js = nc.jetstream();
        this.log.info('flow stream ready', { stream: FLOW_STREAM, subject: this.subject, created: made === 'created' });
        this.pump();
        return true;
      } catch (err) {
        if (this.closed) break;
        await nc?.close().catch(() => undefined);
        nc = undefined;
        this.log.warn('flow stream not available; will retry', { url: this.opts.url, reason: errorMessage(err), delayMs: delay, queued: this.queue.length });
        await new Promise<void>((r) => {
          this.wake = r;
          this.retryTimer = setTimeout(r, delay);
        });
        delay = Math.min(delay * 2, 30_000);
      } finally {
        if (this.closed && nc && nc !== this.nc) await nc.close().catch(() => undefined);
      }
    }
    return false;
  }

  private pump(): void {
    const js = this.js;
    if (!js) return;
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const flow = this.queue.shift()!;
      this.inFlight++;
      js.publish(this.subject, enc.encode(JSON.stringify(policyv1.Flow.toJSON(flow))))
        .then(
          () => void this.published++,
          (err: unknown) => {
            this.failed++;
            this.warn('flow stream publish failed', { reason: errorMessage(err) });
          },
        )
        .finally(() => {
          this.inFlight--;
          this.pump();
          if (this.inFlight === 0 && this.queue.length === 0) this.idle?.();
        });
    }
  }

  private warn(msg: string, fields: Record<string, unknown>): void {
    const now = Date.now();
    if (now - this.warnedAt < WARN_EVERY_MS) return;
    this.warnedAt = now;
    this.log.warn(msg, { ...fields, failed: this.failed, dropped: this.dropped });
  }
}
