import * as path from 'node:path';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { type AgentConfig, GrpcService, Module } from '@agent/option';
import { context, trace, type Link, type SpanContext } from '@opentelemetry/api';
import {
  AlreadyExistsError,
  boundedWriter,
  FailedPreconditionError,
  Logger,
  NotFoundError,
  InvalidArgumentError,
  INTERNAL_ONLY,
  serverStream,
  startGrpcServer,
  tracer,
  unary,
  type Listener,
  type Peer,
  type RunningServer,
} from '@agent/grpc-kit';
import { ContainerExposition, enumLabel, labelText, metrics, withModule } from '@agent/telemetry';
import { hostFigures, NO_FIGURES, type CgroupRef, type Figures, type Runtime, type Sampler } from '@agent/drivers';
import { driverFor, fromRuntimeInfo, type HostDrivers } from '@agent/kinds';
import { internalv1, v1 } from '@agent/proto';

/** Opens the sampler of an object of kind: its driver's (the kinds registry says which). */
export type SamplerSource = (kind: v1.Kind, runtime: Runtime) => Sampler;

/** Each kind's driver samples its objects. */
export function driverSamplers(drivers: Pick<HostDrivers, 'objects'>): SamplerSource {
  return (kind, runtime) => driverFor(drivers, kind).sampler(runtime);
}
import { FlowSource } from './flow-source';

/** Objects sampled between two yields to the event loop (about half a millisecond of file reads). */
const SAMPLE_SLICE = 16;

/** Batches a WatchFlows call may have waiting to be sent; past it new ones are dropped (a stuck watcher must not hold memory). */
const FLOW_WATCH_BACKLOG = 64;

interface Task {
  readonly objectId: string;
  readonly target: internalv1.CollectTarget;
  intervalMs: number;
  forwarding: boolean;
  nextDue: number;
  prev?: { cpuNs: number; atMs: number };
  last?: v1.Report;
  /** The PushOn that started forwarding: periodic sends are new traces linked to it. */
  pushedBy?: SpanContext;
  /** The object's figures, from its driver (files kept open); none for the host. */
  readonly reader?: Sampler;
  /** Its series' labels in the exposition format (cAdvisor's names); none for the host. */
  readonly labels?: string;
}

/**
 * The collector: one collect task per object, all sampled by one scheduler
 * (a single timer set to the earliest due task, not a timer per object).
 * Samples of pushing objects are forwarded to the reporter in one batch per tick.
 */
export class CollectorService {
  private readonly tasks = new Map<string, Task>();
  private timer: NodeJS.Timeout | undefined;
  private timerDue = Infinity;
  private closed = false;
  /** Ends each running WatchFlows call. */
  private readonly flowWatchers = new Set<() => void>();
  private unpublish: (() => void) | undefined;
  /** The objects' last samples in cAdvisor's names, for GET /metrics. */
  readonly exposition = new ContainerExposition(() => this.objectFigures());

  constructor(
    private readonly samplers: SamplerSource,
    private readonly reporter: Peer<internalv1.ReporterClient>,
    private readonly opts: {
      readonly hostId: string;
      baseIntervalMs: number;
      /** An object's cgroup path as its id label shows it ("/agent/web"). */
      readonly cgroupName?: (ref: CgroupRef) => string;
    },
    private readonly log: Logger,
    /** The dataplane's flow log; without it WatchFlows is FAILED_PRECONDITION. */
    private readonly flows?: FlowSource,
  ) {}

  createTask(target: internalv1.CollectTarget): internalv1.CollectTask {
    if (target.objectId === '') throw new InvalidArgumentError('object_id', 'required');
    if (this.tasks.has(target.objectId)) throw new AlreadyExistsError(`collect task for ${target.objectId} exists`);
    // An object with no recorded workload has no figures (never the host's).
    const runtime = target.runtime ? fromRuntimeInfo(target.runtime) : undefined;
    const reader = target.host ? undefined : runtime ? this.samplers(target.kind, runtime) : NO_FIGURES;
    const task: Task = {
      objectId: target.objectId,
      target,
      intervalMs: this.opts.baseIntervalMs,
      forwarding: false,
      nextDue: aligned(Date.now(), this.opts.baseIntervalMs),
      reader,
      labels: target.host ? undefined : this.labelsOf(target, runtime?.cgroup),
    };
    this.tasks.set(task.objectId, task);
    this.sample(task); // first sample at once: the baseline for CPU%
    this.schedule();
    return view(task);
  }

  deleteTask(objectId: string): void {
    const task = this.get(objectId);
    task.reader?.close();
    this.tasks.delete(objectId);
    this.exposition.invalidate();
    this.schedule();
  }

  getTask(objectId: string): internalv1.CollectTask {
    return view(this.get(objectId));
  }

  setPush(objectId: string, intervalMs: number): internalv1.CollectTask {
    const task = this.get(objectId);
    task.forwarding = intervalMs > 0;
    task.pushedBy = task.forwarding ? trace.getSpanContext(context.active()) : undefined;
    task.intervalMs = intervalMs > 0 ? intervalMs : this.opts.baseIntervalMs;
    task.nextDue = aligned(Date.now(), task.intervalMs);
    this.schedule();
    return view(task);
  }

  collectOnce(objectId: string): v1.Report {
    return this.sample(this.get(objectId));
  }

  /** A new base rate applies at once to every task nobody pushes. */
  configure(baseIntervalMs: number): void {
    if (baseIntervalMs <= 0 || baseIntervalMs === this.opts.baseIntervalMs) return;
    this.opts.baseIntervalMs = baseIntervalMs;
    for (const t of this.tasks.values()) {
      if (t.forwarding || t.target.host) continue;
      t.intervalMs = baseIntervalMs;
      t.nextDue = aligned(Date.now(), baseIntervalMs);
    }
    this.schedule();
    this.log.info('collect base interval changed', { baseIntervalMs });
  }

  /** Samples every task now (what one tick does when all are due); for benchmarks. */
  sweep(): number {
    for (const t of this.tasks.values()) this.sample(t);
    return this.tasks.size;
  }

  /** This process's GET /metrics shows the objects' series (until close). */
  publishMetrics(): void {
    this.unpublish ??= metrics.addExposition(() => this.exposition.exposition());
  }

  /** Stops sampling, ends the WatchFlows calls (after the open window) and stops the flow log. */
  async close(): Promise<void> {
    this.closed = true;
    this.unpublish?.();
    if (this.timer) clearTimeout(this.timer);
    for (const t of this.tasks.values()) t.reader?.close();
    const flows = this.flows?.close();
    for (const end of [...this.flowWatchers]) end();
    await flows;
  }

  /** Writes every flow batch to the call until it is cancelled or the collector closes. */
  private async watchFlows(call: ServerWritableStream<internalv1.Empty, internalv1.FlowBatch>): Promise<void> {
    if (!this.flows) throw new FailedPreconditionError('this collector has no flow log');
    const write = boundedWriter(call, {
      backlog: FLOW_WATCH_BACKLOG,
      everyDrops: 100,
      onDrop: (dropped, batch: internalv1.FlowBatch) => this.log.warn('flow watcher is not reading; batches dropped', { dropped, flows: batch.flows.length }),
    });
    const unsubscribe = await this.flows.subscribe(write);
    try {
      await new Promise<void>((resolve) => {
        if (call.cancelled || this.closed) return resolve();
        const end = (): void => {
          this.flowWatchers.delete(end);
          resolve();
        };
        this.flowWatchers.add(end);
        call.on('cancelled', end);
        call.on('close', end);
      });
    } finally {
      unsubscribe();
    }
  }

  /** id (the cgroup path), name, image, object_id, kind, origin. */
  private labelsOf(target: internalv1.CollectTarget, cgroup: CgroupRef | undefined): string {
    return labelText({
      id: cgroup && this.opts.cgroupName ? this.opts.cgroupName(cgroup) : '',
      name: target.name,
      image: target.image,
      object_id: target.objectId,
      kind: enumLabel(v1.Kind, target.kind, 'KIND_'),
      origin: target.origin === v1.Origin.ORIGIN_UNSPECIFIED ? '' : enumLabel(v1.Origin, target.origin, 'ORIGIN_'),
    });
  }

  private *objectFigures(): Iterable<{ labels: string; figures: v1.Report | undefined }> {
    for (const t of this.tasks.values()) if (t.labels !== undefined) yield { labels: t.labels, figures: t.last };
  }

  private get(objectId: string): Task {
    const t = this.tasks.get(objectId);
    if (!t) throw new NotFoundError(`no collect task for ${objectId}`);
    return t;
  }

  private sample(task: Task): v1.Report {
    const atMs = Date.now();
    const f: Figures = task.reader ? task.reader.read() : hostFigures();
    let cpuPercent: number | undefined;
    if (f.cpuUsageNs !== undefined && task.prev && atMs > task.prev.atMs) {
      cpuPercent = ((f.cpuUsageNs - task.prev.cpuNs) / ((atMs - task.prev.atMs) * 1e6)) * 100;
      cpuPercent = Math.max(0, Math.round(cpuPercent * 100) / 100);
    }
    if (f.cpuUsageNs !== undefined) task.prev = { cpuNs: f.cpuUsageNs, atMs };
    const report: v1.Report = {
      objectId: task.objectId,
      hostId: this.opts.hostId,
      timestamp: new Date(atMs),
      seq: 0, // the spool numbers what goes upstream
      bootId: '',
      cpuUsageNs: f.cpuUsageNs,
      cpuPercent,
      memoryUsageBytes: f.memoryUsageBytes,
      memoryLimitBytes: f.memoryLimitBytes,
      pids: f.pids,
      netRxBytes: f.netRxBytes,
      netTxBytes: f.netTxBytes,
      blkioReadBytes: f.blkioReadBytes,
      blkioWriteBytes: f.blkioWriteBytes,
      cpuThrottledPeriods: f.cpuThrottledPeriods,
      cpuThrottledNs: f.cpuThrottledNs,
      memoryHighEvents: f.memoryHighEvents,
      memoryWorkingSetBytes: f.memoryWorkingSetBytes,
      cpuQuotaUs: f.cpuQuotaUs,
      cpuPeriodUs: f.cpuPeriodUs,
    };
    task.last = report;
    if (task.labels !== undefined) this.exposition.invalidate();
    return report;
  }

  /** Arms the one timer for the earliest due task. */
  private schedule(): void {
    if (this.closed) return;
    let due = Infinity;
    for (const t of this.tasks.values()) due = Math.min(due, t.nextDue);
    if (due === this.timerDue && this.timer) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = due;
    if (due === Infinity) return;
    this.timer = setTimeout(() => this.tick(), Math.max(0, due - Date.now()));
  }

  private tick(): void {
    this.timer = undefined;
    this.timerDue = Infinity;
    const now = Date.now();
    const due: Task[] = [];
    for (const task of this.tasks.values()) {
      if (task.nextDue > now) continue;
      // Keep the cadence; skip missed slots rather than bursting.
      task.nextDue = aligned(now, task.intervalMs);
      due.push(task);
    }
    this.schedule();
    void this.sampleDue(due);
  }

  /**
   * Samples the due tasks a slice at a time, yielding to the event loop
   * between slices: a call or a scrape waits for one slice of a host's
   * objects, never for all of them. Then forwards the pushed ones in one batch.
   */
  private async sampleDue(due: readonly Task[]): Promise<void> {
    const out: v1.Report[] = [];
    const links: Link[] = [];
    for (let i = 0; i < due.length; i++) {
      if (i > 0 && i % SAMPLE_SLICE === 0) await new Promise((r) => setImmediate(r));
      if (this.closed) return;
      const task = due[i]!;
      if (this.tasks.get(task.objectId) !== task) continue; // deleted meanwhile: its files are closed
      try {
        const r = this.sample(task);
        if (task.forwarding) {
          out.push(r);
          if (task.pushedBy && links.length < 32) links.push({ context: task.pushedBy });
        }
      } catch (err) {
        this.log.warn('sample failed', { objectId: task.objectId, err });
      }
    }
    if (out.length > 0) {
      await withModule(Module.Collector, () =>
        tracer.startActiveSpan('collector forward', { root: true, links, attributes: { 'agent.reports': out.length } }, (span) =>
          this.reporter
            .call('deliver', { hostId: this.opts.hostId, reports: out, changes: [], gaps: [], flows: [] }, { timeoutMs: 5_000 })
            .catch((err: Error) => this.log.warn('deliver to reporter failed', { reports: out.length, reason: err.message }))
            .finally(() => span.end()),
        ),
      );
    }
  }

  implementation(): internalv1.CollectorServer {
    return {
      createTask: unary(this.log, async (r) => this.createTask(r)),
      deleteTask: unary(this.log, async (r) => (this.deleteTask(r.objectId), {})),
      getTask: unary(this.log, async (r) => this.getTask(r.objectId)),
      setPush: unary(this.log, async (r) => this.setPush(r.objectId, r.intervalMs)),
      collectOnce: unary(this.log, async (r) => this.collectOnce(r.objectId)),
      configure: unary(this.log, async (r) => (this.configure(r.baseIntervalMs), {})),
      listTasks: unary(this.log, async () => ({ objectIds: [...this.tasks.keys()] })),
      watchFlows: serverStream(this.log, (_r, call) => this.watchFlows(call)),
    };
  }
}

/**
 * The next multiple of the interval: tasks with the same interval fall due on
 * the same tick, so one tick samples them all and sends one batch, instead of
 * one wake-up and one delivery per object.
 */
function aligned(now: number, intervalMs: number): number {
  return Math.ceil((now + 1) / intervalMs) * intervalMs;
}

function view(t: Task): internalv1.CollectTask {
  return { objectId: t.objectId, intervalMs: t.intervalMs, forwarding: t.forwarding, last: t.last };
}


export async function startCollector(
  config: AgentConfig,
  drivers: Pick<HostDrivers, 'objects' | 'cgroup'>,
  reporter: Peer<internalv1.ReporterClient>,
  listener: Listener,
): Promise<{ server: RunningServer; service: CollectorService }> {
  const log = new Logger(Module.Collector, config.logLevel);
  const flows = new FlowSource({
    group: config.nflogGroup,
    dir: path.join(config.dataDir, 'flowlog'),
    windowMs: config.flowWindowMs,
    onError: (message) => log.warn('flow log', { reason: message }),
  });
  const service = new CollectorService(
    driverSamplers(drivers),
    reporter,
    { hostId: config.hostId, baseIntervalMs: config.collectBaseMs, cgroupName: (ref) => drivers.cgroup.fs.nameOf(ref) },
    log,
    flows,
  );
  service.publishMetrics();
  const server = await startGrpcServer({
    listeners: [listener],
    log,
    services: [{ name: GrpcService.Collector, definition: internalv1.CollectorService, implementation: service.implementation(), access: INTERNAL_ONLY }],
  });
  server.health.setAll(true);
  return { server, service };
}
