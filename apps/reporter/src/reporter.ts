import type { ServerWritableStream } from '@grpc/grpc-js';
import { type AgentConfig, GrpcService, Module } from '@agent/option';
import { context, trace, type Context, type Link } from '@opentelemetry/api';
import { Logger, serverStream, INTERNAL_ONLY, startGrpcServer, tracer, unary, type Listener, type RunningServer } from '@agent/grpc-kit';
import type { Driver } from '@agent/drivers';
import { internalv1, type sinkv1, v1 } from '@agent/proto';
import { ReportFile } from './report-file';

/** One thing waiting for the upstream, with the trace it came from. */
type Outgoing = { readonly report: v1.Report; readonly ctx: Context } | { readonly change: sinkv1.ObjectChange; readonly ctx: Context };

/** Reports waiting for the upstream beyond this many are dropped, oldest first, and counted. */
const MAX_PENDING = 50_000;
const UPSTREAM_BATCH = 500;

/**
 * The reporter: report tasks (which objects are pushed) and the workers that
 * push reports out: to the upstream through the RPC driver (Bus Out), to a
 * JSON Lines file, and to every Subscribe stream (Watch).
 */
export class ReporterService {
  private readonly tasks = new Set<string>();
  private readonly subscribers = new Map<string, Set<ServerWritableStream<internalv1.ObjectRef, v1.Report>>>();
  private pending: Outgoing[] = [];
  private dropped = 0;
  private sending: Promise<void> | undefined;
  private file: ReportFile | undefined;

  constructor(
    private readonly opts: { hostId: string; reportFile: string; reportFileMaxBytes: number; upstream?: Driver },
    private readonly log: Logger,
  ) {
    if (opts.reportFile !== 'off') this.file = new ReportFile(opts.reportFile, opts.reportFileMaxBytes);
  }

  start(objectId: string): void {
    this.tasks.add(objectId);
  }

  stop(objectId: string): void {
    this.tasks.delete(objectId);
  }

  deliver(reports: readonly v1.Report[]): void {
    const out = reports.filter((r) => this.tasks.has(r.objectId));
    if (out.length > 0) this.send(out);
  }

  /** The report workers: every sink gets every report. */
  send(reports: readonly v1.Report[]): void {
    const stamped = reports.map((r) => ({ ...r, hostId: this.opts.hostId }));
    this.file?.append(stamped.map((r) => JSON.stringify(v1.Report.toJSON(r))));
    for (const r of stamped) for (const s of this.subscribers.get(r.objectId) ?? []) s.write(r);
    if (this.opts.upstream) {
      const ctx = context.active();
      this.enqueue(stamped.map((report) => ({ report, ctx })));
    }
  }

  /** An object changed state: the upstream hears of it. */
  announce(object: v1.Object): void {
    if (this.opts.upstream) this.enqueue([{ change: { object, at: new Date() }, ctx: context.active() }]);
  }

  private enqueue(items: readonly Outgoing[]): void {
    this.pending.push(...items);
    if (this.pending.length > MAX_PENDING) {
      const over = this.pending.length - MAX_PENDING;
      this.pending.splice(0, over);
      this.dropped += over;
      this.log.warn('upstream backlog full; oldest reports dropped', { dropped: this.dropped });
    }
    this.sending ??= this.drain().finally(() => (this.sending = undefined));
  }

  /**
   * Sends the backlog in batches; on failure keeps it and retries with
   * backoff. Each send runs in the trace of the first item it carries and
   * links the others.
   */
  private async drain(): Promise<void> {
    const upstream = this.opts.upstream;
    let backoff = 200;
    while (upstream && this.pending.length > 0) {
      const batch = this.pending.slice(0, UPSTREAM_BATCH);
      const reports = batch.flatMap((o) => ('report' in o ? [o.report] : []));
      const changes = batch.flatMap((o) => ('change' in o ? [o.change] : []));
      const links: Link[] = [];
      for (const o of batch.slice(1)) {
        const sc = trace.getSpanContext(o.ctx);
        if (sc && !links.some((l) => l.context.spanId === sc.spanId)) links.push({ context: sc });
      }
      try {
        await context.with(batch[0]!.ctx, () =>
          tracer.startActiveSpan('reporter push upstream', { links: links.slice(0, 32), attributes: { 'agent.reports': reports.length, 'agent.changes': changes.length } }, (span) =>
            upstream.push({ hostId: this.opts.hostId, reports, changes }).finally(() => span.end()),
          ),
        );
        this.pending.splice(0, batch.length);
        backoff = 200;
      } catch (err) {
        this.log.warn('upstream push failed; will retry', { pending: this.pending.length, reason: (err as Error).message });
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 10_000);
        if (this.closing) return;
      }
    }
  }

  private closing = false;

  /** Waits for the upstream backlog to go out, at most timeoutMs. */
  async flush(timeoutMs = 5_000): Promise<void> {
    this.file?.sync();
    if (!this.sending) return;
    await Promise.race([this.sending, new Promise((r) => setTimeout(r, timeoutMs))]);
  }

  async close(): Promise<void> {
    await this.flush();
    this.closing = true;
    if (this.pending.length > 0) this.log.warn('reports not delivered upstream at exit', { pending: this.pending.length });
    this.file?.close();
    this.file = undefined;
    for (const set of this.subscribers.values()) for (const s of set) s.end();
  }

  private subscribe(req: internalv1.ObjectRef, call: ServerWritableStream<internalv1.ObjectRef, v1.Report>): Promise<void> {
    let set = this.subscribers.get(req.objectId);
    if (!set) this.subscribers.set(req.objectId, (set = new Set()));
    set.add(call);
    return new Promise((resolve) => {
      const done = (): void => {
        set.delete(call);
        if (set.size === 0) this.subscribers.delete(req.objectId);
        resolve();
      };
      call.on('cancelled', done);
      call.on('close', done);
    });
  }

  implementation(): internalv1.ReporterServer {
    return {
      startReport: unary(this.log, async (r) => (this.start(r.objectId), {})),
      stopReport: unary(this.log, async (r) => (this.stop(r.objectId), {})),
      deliver: unary(this.log, async (r) => (this.deliver(r.reports), {})),
      reportOnce: unary(this.log, async (r) => (this.send([r]), {})),
      announce: unary(this.log, async (o) => (this.announce(o), {})),
      subscribe: serverStream(this.log, (r, call) => this.subscribe(r, call)),
      flush: unary(this.log, async () => (await this.flush(), {})),
      listReports: unary(this.log, async () => ({ objectIds: [...this.tasks] })),
    };
  }
}

export async function startReporter(
  config: AgentConfig,
  upstream: Driver | undefined,
  listener: Listener,
): Promise<{ server: RunningServer; service: ReporterService }> {
  const log = new Logger(Module.Reporter, config.logLevel);
  const service = new ReporterService({ hostId: config.hostId, reportFile: config.reportFile, reportFileMaxBytes: config.reportFileMaxBytes, upstream }, log);
  const server = await startGrpcServer({
    listeners: [listener],
    log,
    services: [{ name: GrpcService.Reporter, definition: internalv1.ReporterService, implementation: service.implementation(), access: INTERNAL_ONLY }],
  });
  server.health.setAll(true);
  return { server, service };
}
