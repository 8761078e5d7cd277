import { context, trace, type Context, type Link } from '@opentelemetry/api';
import { atMost, errorMessage, tracer, type Logger } from '@agent/grpc-kit';
import { metrics } from '@agent/telemetry';
import type { Driver } from '@agent/drivers';
import { policyv1, sinkv1, v1 } from '@agent/proto';
import { Kind, type GapPayload, type Spool, type SpoolRecord, type SpoolStats } from '@agent/spool';

const UPSTREAM_BATCH = 500;
/** Traces remembered for links, at most: beyond it the oldest go (links are best effort, delivery is not). */
const MAX_CONTEXTS = 100_000;

/**
 * Bus Out: every report, network flow and object change for the upstream
 * goes into the spool first, then out in batches, oldest first, until the upstream
 * acknowledges it. At-least-once and in order; retries back off without a
 * deadline; a restart resumes from what the spool holds.
 */
export class BusOut {
  /** This boot's seqs still in the spool -> the trace each came from. */
  private readonly contexts = new Map<number, Context>();
  private sending: Promise<void> | undefined;
  private closing = false;
  /** Records the spool could not take (its disk refused): lost, and counted. */
  private refused = 0;
  /** Per boot, the highest seq the upstream said it has everything up to. */
  private readonly acked = new Map<string, number>();
  /** Records spooled and acknowledged since start (GET /metrics). */
  private spooled = 0;
  private sent = 0;
  private readonly unpublish: () => void;

  constructor(
    private readonly spool: Spool,
    private readonly upstream: Driver,
    private readonly hostId: string,
    private readonly log: Logger,
  ) {
    const st = spool.stats();
    if (st.backlog > 0 || st.corrupt > 0 || st.cut > 0) log.info('bus out spool opened', { ...st });
    if (st.corrupt > 0 || st.cut > 0) log.warn('bus out spool had damaged records; they were skipped', { corrupt: st.corrupt, cutBytes: st.cut });
    const off = [
      metrics.reports.provide(() => [
        [{ outcome: 'spooled' }, this.spooled],
        [{ outcome: 'sent' }, this.sent],
        [{ outcome: 'dropped' }, this.refused + this.spool.stats().dropped],
      ]),
      metrics.reportBacklog.provide(() => [[{}, this.spool.stats().backlog]]),
    ];
    this.unpublish = () => off.forEach((f) => f());
    this.kick();
  }

  reports(reports: readonly v1.Report[]): void {
    this.add(reports.map((r) => ({ kind: Kind.Sample as const, payload: Buffer.from(v1.Report.encode(r).finish()) })));
  }

  /** Flows go as reports do: dropped (with a gap) when the spool is full. */
  flows(flows: readonly policyv1.Flow[]): void {
    this.add(flows.map((f) => ({ kind: Kind.Flow as const, payload: Buffer.from(policyv1.Flow.encode(f).finish()) })));
  }

  change(change: sinkv1.ObjectChange): void {
    this.add([{ kind: Kind.Change as const, payload: Buffer.from(sinkv1.ObjectChange.encode(change).finish()) }]);
  }

  stats(): SpoolStats & { refused: number } {
    return { ...this.spool.stats(), refused: this.refused };
  }

  /** Waits for the backlog to go out, at most timeoutMs; what is left stays in the spool. */
  async flush(timeoutMs: number): Promise<void> {
    if (!this.sending) return;
    await atMost(this.sending, timeoutMs);
  }

  close(): void {
    this.closing = true;
    this.unpublish();
    const { backlog } = this.spool.stats();
    if (backlog > 0) this.log.info('bus out backlog kept in the spool for the next start', { backlog });
    this.spool.close();
  }

  private add(items: ReadonlyArray<{ kind: Kind.Sample | Kind.Change | Kind.Flow; payload: Buffer }>): void {
    if (this.closing) return;
    let records: SpoolRecord[];
    try {
      records = this.spool.append(items);
      this.spooled += records.length;
    } catch (err) {
      this.refused += items.length;
      this.log.warn('bus out spool refused records; they will not reach the upstream', { count: items.length, refused: this.refused, reason: errorMessage(err) });
      return;
    }
    const ctx = context.active();
    for (const r of records) this.contexts.set(r.seq, ctx);
    while (this.contexts.size > MAX_CONTEXTS) this.contexts.delete(this.contexts.keys().next().value as number);
    this.kick();
  }

  private kick(): void {
    this.sending ??= this.drain().finally(() => {
      this.sending = undefined;
      // Something appended after the last look: go on.
      if (!this.closing && this.spool.stats().backlog > 0) this.kick();
    });
  }

  private async drain(): Promise<void> {
    let backoff = 200;
    while (!this.closing) {
      const records = this.spool.peek(UPSTREAM_BATCH);
      if (records.length === 0) return;
      const payload = this.payload(records);
      const ctxs = records.flatMap((r) => (r.boot === this.spool.boot ? [this.contexts.get(r.seq)] : [])).filter((c): c is Context => c !== undefined);
      const links: Link[] = [];
      for (const c of ctxs.slice(1)) {
        const sc = trace.getSpanContext(c);
        if (sc && !links.some((l) => l.context.spanId === sc.spanId)) links.push({ context: sc });
        if (links.length >= 32) break;
      }
      let passed = 0;
      try {
        const res = await context.with(ctxs[0] ?? context.active(), () =>
          tracer.startActiveSpan('reporter push upstream', { links, attributes: { 'agent.reports': payload.reports.length, 'agent.flows': payload.flows.length, 'agent.changes': payload.changes.length, 'agent.gaps': payload.gaps.length } }, (span) =>
            this.upstream.push(payload).finally(() => span.end()),
          ),
        );
        const acks = res.acks ?? highest(records);
        for (const [boot, seq] of acks) this.acked.set(boot, Math.max(this.acked.get(boot) ?? 0, seq));
        passed = this.spool.ack(acks);
        this.sent += passed;
        this.forget(acks.get(this.spool.boot) ?? 0);
        if (passed === 0) this.log.warn('upstream acknowledged none of a batch; will send again', { first: `${records[0]!.boot}/${records[0]!.seq}` });
      } catch (err) {
        this.log.warn('upstream push failed; will retry', { backlog: this.spool.stats().backlog, reason: errorMessage(err), delayMs: backoff });
      }
      if (passed > 0) {
        backoff = 200;
        continue;
      }
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10_000);
    }
  }

  private forget(upTo: number): void {
    for (const seq of this.contexts.keys()) {
      if (seq > upTo) break;
      this.contexts.delete(seq);
    }
  }

  /**
   * Spool records -> one push: each message stamped with its (boot, seq).
   * Every seq is accounted for: one the spool lost (a corrupt record skipped
   * at open, a record that does not decode) goes as a gap, so that the
   * upstream's contiguous acknowledgement never waits for it.
   */
  private payload(records: readonly SpoolRecord[]): { hostId: string; reports: v1.Report[]; flows: sinkv1.SpooledFlow[]; changes: sinkv1.ObjectChange[]; gaps: sinkv1.Gap[] } {
    const reports: v1.Report[] = [];
    const flows: sinkv1.SpooledFlow[] = [];
    const changes: sinkv1.ObjectChange[] = [];
    const gaps: sinkv1.Gap[] = [];
    const lost = (boot: string, from: number, to: number): void => void gaps.push({ bootId: boot, seq: to, count: to - from + 1, dropped: [{ from, to }] });
    const last = new Map(this.acked);
    for (const r of records) {
      const prev = last.get(r.boot);
      if (r.kind !== Kind.Gap && prev !== undefined && r.seq > prev + 1) lost(r.boot, prev + 1, r.seq - 1);
      last.set(r.boot, Math.max(prev ?? 0, r.seq));
      try {
        if (r.kind === Kind.Sample) reports.push({ ...v1.Report.decode(r.payload), seq: r.seq, bootId: r.boot });
        else if (r.kind === Kind.Flow) flows.push({ flow: policyv1.Flow.decode(r.payload), seq: r.seq, bootId: r.boot });
        else if (r.kind === Kind.Change) changes.push({ ...sinkv1.ObjectChange.decode(r.payload), seq: r.seq, bootId: r.boot });
        else if (r.kind === Kind.Gap) {
          const g = JSON.parse(r.payload.toString('utf8')) as GapPayload;
          gaps.push({ bootId: r.boot, seq: r.seq, count: g.count, dropped: g.ranges.map(([from, to]) => ({ from, to })) });
        } else throw new Error(`unknown record kind ${String(r.kind)}`);
      } catch (err) {
        this.log.warn('spool record not decodable; sent as a gap', { boot: r.boot, seq: r.seq, reason: errorMessage(err) });
        lost(r.boot, r.seq, r.seq);
      }
    }
    return { hostId: this.hostId, reports, flows, changes, gaps };
  }
}

/** What an upstream that does not acknowledge by seq has: the whole batch. */
function highest(records: readonly SpoolRecord[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of records) out.set(r.boot, Math.max(out.get(r.boot) ?? 0, r.seq));
  return out;
}
