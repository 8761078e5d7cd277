import * as path from 'node:path';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { type AgentConfig, GrpcService, Module } from '@agent/option';
import { Logger, serverStream, INTERNAL_ONLY, startGrpcServer, unary, type Listener, type RunningServer } from '@agent/grpc-kit';
import type { Driver } from '@agent/drivers';
import { internalv1, type policyv1, v1 } from '@agent/proto';
import { Spool } from '@agent/spool';
import { BusOut } from './bus-out';
import { FlowStream } from './flow-stream';
import { ReportFile } from './report-file';

/**
 * The reporter: report tasks (which objects are pushed) and the workers that
 * push reports out: to the upstream through the RPC driver (Bus Out), to a
 * JSON Lines file, and to every Subscribe stream (Watch). Network flows go to
 * the upstream (Bus Out) and, with a cluster store on NATS, to the cluster's
 * flow stream; not to the file.
 */
export class ReporterService {
  private readonly tasks = new Set<string>();
  private readonly subscribers = new Map<string, Set<ServerWritableStream<internalv1.ObjectRef, v1.Report>>>();
  private file: ReportFile | undefined;
  private readonly busOut: BusOut | undefined;
  private readonly flowStream: FlowStream | undefined;

  constructor(
    private readonly opts: { hostId: string; reportFile: string; reportFileMaxBytes: number; upstream?: Driver; spoolDir?: string; spoolMaxBytes?: number; clusterUrl?: string },
    private readonly log: Logger,
  ) {
    if (opts.reportFile !== 'off') this.file = new ReportFile(opts.reportFile, opts.reportFileMaxBytes);
    if (opts.upstream) {
      if (!opts.spoolDir) throw new Error('an upstream needs a spool directory');
      this.busOut = new BusOut(new Spool(opts.spoolDir, { maxBytes: opts.spoolMaxBytes ?? 256 * 1024 * 1024 }), opts.upstream, opts.hostId, log);
    }
    if (opts.clusterUrl) this.flowStream = new FlowStream({ url: opts.clusterUrl, hostId: opts.hostId }, log);
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
    this.busOut?.reports(stamped);
  }

  /** Network flows agentcore recorded: to the upstream and the cluster's flow stream, each with this host's id where it has none. */
  deliverFlows(flows: readonly policyv1.Flow[]): void {
    if (flows.length === 0) return;
    const stamped = flows.map((f) => (f.hostId === '' ? { ...f, hostId: this.opts.hostId } : f));
    this.busOut?.flows(stamped);
    this.flowStream?.publish(stamped);
  }

  /** An object changed state: the upstream hears of it. */
  announce(object: v1.Object): void {
    this.busOut?.change({ object, at: new Date(), seq: 0, bootId: '' });
  }

  /** Waits for the upstream backlog to go out, at most timeoutMs (what is left stays in the spool). */
  async flush(timeoutMs = 5_000): Promise<void> {
    this.file?.sync();
    await this.busOut?.flush(timeoutMs);
  }

  async close(): Promise<void> {
    await this.flush();
    this.busOut?.close();
    await this.flowStream?.close();
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
      deliverFlows: unary(this.log, async (r) => (this.deliverFlows(r.flows), {})),
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
  const service = new ReporterService(
    { hostId: config.hostId, reportFile: config.reportFile, reportFileMaxBytes: config.reportFileMaxBytes, upstream, spoolDir: path.join(config.dataDir, 'spool'), spoolMaxBytes: config.spoolMaxBytes, clusterUrl: config.clusterUrl },
    log,
  );
  const server = await startGrpcServer({
    listeners: [listener],
    log,
    services: [{ name: GrpcService.Reporter, definition: internalv1.ReporterService, implementation: service.implementation(), access: INTERNAL_ONLY }],
  });
  server.health.setAll(true);
  return { server, service };
}
