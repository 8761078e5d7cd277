import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { context } from '@opentelemetry/api';
import { AGENT_VERSION, type AgentConfig, GrpcService, HealthComponent, HOST_OBJECT_ID, Module } from '@agent/option';
import {
  AlreadyExistsError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  Logger,
  NotFoundError,
  UnavailableError,
  errorMessage,
  retry,
  serverStream,
  startGrpcServer,
  traced,
  unary,
  type Peer,
  type RunningServer,
  type Listener,
  INTERNAL_ONLY,
} from '@agent/grpc-kit';
import { internalv1, v1 } from '@agent/proto';
import { openStore, type KvStore } from '@agent/store';
import { ClusterSync } from './cluster';
import { EventLog } from './events';
import { Records, type DamagedRecord } from './records';

const { State, EventStatus, EventType } = v1;

export interface Peers {
  readonly manager: Peer<internalv1.ManagerClient>;
  readonly collector: Peer<internalv1.CollectorClient>;
  readonly reporter: Peer<internalv1.ReporterClient>;
}

interface ObjectRecord {
  readonly object: v1.Object;
  runtime?: internalv1.RuntimeInfo;
  hasCollectTask: boolean;
  /** A Delete is published: later events are refused at once. */
  deleteRequested: boolean;
  /** The tail of this object's event queue: events run in order per object. */
  queue: Promise<void>;
}

/** How long a peer call may take, apart from the manager's (which may pull images). */
const PEER_TIMEOUT_MS = 10_000;

/**
 * agentcore: owns objects and events, and drives the flows of the design
 * (create, update, delete, push on/off/once, heartbeat) through the manager,
 * collector and reporter. Events of one object run in order; different
 * objects proceed concurrently.
 */
export class AgentCore {
  private readonly objects = new Map<string, ObjectRecord>();
  private readonly names = new Map<string, string>();
  private readonly records: Records;
  private readonly events: EventLog;
  private readonly done = new Map<string, Promise<void>>();
  private readonly changes = new EventEmitter();
  private accepting = true;

  constructor(
    private readonly peers: Peers,
    store: KvStore,
    private readonly opts: { hostId: string; heartbeatMs: number; waitTimeoutMs: number; eventRetention: number; eventRetentionMs: number; discoverManage: boolean },
    private readonly log: Logger,
    /** Told of every write the store refuses. */
    onStoreRefused?: (err: Error) => void,
  ) {
    this.changes.setMaxListeners(0);
    this.records = new Records(store, opts.hostId, log, onStoreRefused);
    this.events = new EventLog(this.records, { count: opts.eventRetention, ageMs: opts.eventRetentionMs }, log);
  }

  /**
   * Every change of an object goes to the store before anyone is told of it:
   * what a restart, even after SIGKILL, starts from. A deleted workload's
   * record goes (the object stays visible here until cleanup).
   */
  private record(rec: ObjectRecord): Promise<void> {
    return rec.object.state === State.STATE_DELETED ? this.records.deleteObject(rec.object.objectId) : this.records.putObject(rec.object, rec.runtime);
  }

  // ---- the one task worker's system queue, and what the cluster sync reads

  private systemQueue: Promise<void> = Promise.resolve();
  private readonly waiting = new Map<symbol, number>();

  /** Config and system tasks run one at a time, in order, on their own queue. */
  system(name: string, fn: () => Promise<void> | void): Promise<void> {
    const token = Symbol(name);
    this.waiting.set(token, Date.now());
    const run = this.systemQueue.then(async () => {
      this.waiting.delete(token);
      try {
        await fn();
      } catch (err) {
        this.log.warn('system task failed', { task: name, err });
      }
    });
    this.systemQueue = run;
    return run;
  }

  oldestWaitMs(): number {
    let oldest = Infinity;
    for (const t of this.waiting.values()) oldest = Math.min(oldest, t);
    return oldest === Infinity ? 0 : Date.now() - oldest;
  }

  summary(): Record<string, number> {
    const out: Record<string, number> = { objects: 0, pushing: 0 };
    for (const { object } of this.objects.values()) {
      const k = `state_${State[object.state]?.replace('STATE_', '').toLowerCase()}`;
      out[k] = (out[k] ?? 0) + 1;
      out.objects = (out.objects ?? 0) + 1;
      if (object.pushing) out.pushing = (out.pushing ?? 0) + 1;
    }
    return out;
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

  /** Forgets objects deleted before t (their records are already gone). */
  dropDeletedBefore(t: number): number {
    let n = 0;
    for (const [id, { object }] of this.objects) {
      if (object.state === State.STATE_DELETED && (object.updatedAt?.getTime() ?? 0) < t) {
        this.objects.delete(id);
        n++;
      }
    }
    return n;
  }

  /**
   * After a restart: every recorded object is found again (containers by id or
   * label, processes by pid and start time), watched and collected again, and
   * its pushing resumed. One whose workload vanished meanwhile becomes DELETED
   * (container, cgroup) or STOPPED (process). Nothing is created anew.
   */
  async recover(): Promise<DamagedRecord[]> {
    const { records, damaged } = await this.records.loadObjects();
    for (const d of damaged) this.log.error('damaged store record skipped', { key: d.key, reason: d.reason });
    let adopted = 0;
    for (const saved of records) {
      const object = saved.object;
      const rec: ObjectRecord = { object, runtime: saved.runtime, hasCollectTask: false, deleteRequested: false, queue: Promise.resolve() };
      this.objects.set(object.objectId, rec);
      if (object.state === State.STATE_DELETED || object.state === State.STATE_FAILED) {
        if (object.state === State.STATE_FAILED) this.names.set(object.spec?.name ?? '', object.objectId);
        continue;
      }
      this.names.set(object.spec?.name ?? '', object.objectId);
      await this.readopt(rec).catch((err: unknown) => this.log.error('object not recovered', { objectId: object.objectId, reason: errorMessage(err) }));
      adopted++;
    }
    if (records.length > 0 || damaged.length > 0) this.log.info('recovered objects', { recorded: records.length, adopted, damaged: damaged.length });
    await this.resumeEvents();
    return damaged;
  }

  /**
   * Events a kill interrupted run again, in their order: a create whose
   * workload recovery did not find whole (its remains are gone by now), and
   * every other kind. A create recovery adopted is settled by the object's state.
   */
  private async resumeEvents(): Promise<void> {
    const { interrupted } = await this.events.load();
    let resumed = 0;
    const creating = new Set<string>();
    for (const { event, request } of interrupted) {
      const rec = this.objects.get(event.objectId);
      try {
        if (event.type === EventType.EVENT_TYPE_CREATE && rec?.object.state === State.STATE_PENDING) {
          this.schedule(rec, event, () => this.runCreate(rec));
          creating.add(rec.object.objectId);
          resumed++;
          continue;
        }
        if (event.type === EventType.EVENT_TYPE_CREATE || !request || !rec) {
          const made = event.type === EventType.EVENT_TYPE_CREATE && (rec?.object.state === State.STATE_RUNNING || rec?.object.state === State.STATE_STOPPED);
          const why = rec?.object.lastError ? `: ${rec.object.lastError}` : '';
          await this.events.finish(event, made ? EventStatus.EVENT_STATUS_SUCCEEDED : EventStatus.EVENT_STATUS_FAILED, made ? '' : `interrupted by an agent restart${why}`);
          continue;
        }
        const plan = this.plan(request);
        this.schedule(plan.rec, event, plan.run);
        resumed++;
      } catch (err) {
        await this.events.finish(event, EventStatus.EVENT_STATUS_FAILED, `not resumed after an agent restart: ${errorMessage(err)}`).catch(() => undefined);
      }
    }
    if (interrupted.length > 0) this.log.info('events interrupted by the restart', { interrupted: interrupted.length, resumed });
    // A PENDING record with no create event: the kill came between the two writes, so the
    // create was never acknowledged and nothing was started for it. It goes.
    for (const [objectId, rec] of this.objects) {
      if (rec.object.state !== State.STATE_PENDING || rec.object.origin !== v1.Origin.ORIGIN_CREATED || creating.has(objectId)) continue;
      try {
        await this.records.deleteObject(objectId);
        this.objects.delete(objectId);
        this.names.delete(rec.object.spec?.name ?? '');
        this.log.info('unacknowledged create dropped', { objectId });
      } catch (err) {
        await this.setState(rec, State.STATE_FAILED, `create was never acknowledged: ${errorMessage(err)}; delete it`).catch(() => undefined);
      }
    }
  }

  private async readopt(rec: ObjectRecord): Promise<void> {
    const { manager, reporter } = this.peers;
    const objectId = rec.object.objectId;
    const wasPending = rec.object.state === State.STATE_PENDING;
    try {
      const rt = await manager.call('adoptObject', { objectId, spec: rec.object.spec, runtime: rec.runtime }, { timeoutMs: this.opts.waitTimeoutMs });
      this.setRuntime(rec, rt);
    } catch (err) {
      if (!(err instanceof NotFoundError)) {
        await this.setState(rec, State.STATE_FAILED, `recovery: ${errorMessage(err)}`);
        return;
      }
      if (wasPending) {
        // Half-made or never made: what exists of it goes, and the create runs again (resumeEvents).
        await manager.call('deleteObject', { objectId, spec: rec.object.spec }, { timeoutMs: this.opts.waitTimeoutMs }).catch((e: unknown) =>
          this.setState(rec, State.STATE_FAILED, `create interrupted by an agent restart; what it made could not be removed: ${errorMessage(e)}`),
        );
        return;
      }
      const kind = rec.object.spec?.kind;
      rec.object.pushing = false;
      rec.object.pushIntervalMs = 0;
      if (kind === v1.Kind.KIND_PROCESS) return this.setState(rec, State.STATE_STOPPED, 'exited while the agent was down');
      this.names.delete(rec.object.spec?.name ?? '');
      rec.runtime = undefined;
      return this.setState(rec, State.STATE_DELETED, 'removed while the agent was down');
    }
    await this.giveCollectTask(rec);
    if (rec.object.pushing) await reporter.call('startReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
    const running = rec.runtime?.running !== false;
    const lastError = running ? '' : rec.object.state === State.STATE_STOPPED ? rec.object.lastError : 'exited while the agent was down';
    await this.setState(rec, running ? State.STATE_RUNNING : State.STATE_STOPPED, lastError);
  }

  /** Heartbeat: a host collect task plus a host report task. */
  async start(): Promise<void> {
    const { collector, reporter } = this.peers;
    await collector.call('createTask', { objectId: HOST_OBJECT_ID, kind: v1.Kind.KIND_UNSPECIFIED, pid: 0, host: true }, { timeoutMs: PEER_TIMEOUT_MS }).catch((err: unknown) => {
      if (!(err instanceof AlreadyExistsError)) throw err;
    });
    await collector.call('setPush', { objectId: HOST_OBJECT_ID, intervalMs: this.opts.heartbeatMs }, { timeoutMs: PEER_TIMEOUT_MS });
    await reporter.call('startReport', { objectId: HOST_OBJECT_ID }, { timeoutMs: PEER_TIMEOUT_MS });
    this.log.info('heartbeat running', { intervalMs: this.opts.heartbeatMs });
  }

  /** Starts following workloads that stop, start, appear or vanish by themselves (after recover). */
  follow(): void {
    this.followRuntime(250);
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
    await this.start();
    for (const rec of this.objects.values()) {
      const objectId = rec.object.objectId;
      if (lostCollector && rec.hasCollectTask) await this.giveCollectTask(rec);
      if (lostReporter && rec.object.pushing) await reporter.call('startReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
    }
  }

  /** Workloads that stop or start by themselves change their object's state, in order with its events. */
  private followRuntime(backoffMs: number): void {
    if (!this.accepting) return;
    const stream = this.peers.manager.client.watchRuntime({}, this.peers.manager.traceMetadata());
    this.runtimeStream = stream;
    stream.on('data', (e: internalv1.RuntimeEvent) => {
      backoffMs = 250;
      this.onRuntime(e);
    });
    stream.on('error', () => {
      if (!this.accepting) return;
      setTimeout(() => this.followRuntime(Math.min(backoffMs * 2, 5_000)), backoffMs).unref();
    });
  }

  private runtimeStream: { cancel(): void } | undefined;

  private onRuntime(e: internalv1.RuntimeEvent): void {
    let rec = this.objects.get(e.objectId);
    if (!rec && e.spec) rec = this.discover(e);
    if (!rec) return;
    const r = rec;
    r.queue = r.queue.then(async () => {
      const s = r.object.state;
      if (s === State.STATE_DELETED || r.deleteRequested) return;
      if (e.removed) return this.forget(r, e.reason);
      if (s !== State.STATE_RUNNING && s !== State.STATE_STOPPED && s !== State.STATE_PENDING) return;
      if (e.runtime) this.setRuntime(r, e.runtime);
      else if (r.runtime) r.runtime.running = e.running;
      if (e.spec && e.running) await this.giveCollectTask(r, true);
      r.object.exitCode = e.running ? undefined : e.exitCode;
      const failed = !e.running && e.exitCode !== 0 && e.reason !== 'exited with code 0' && e.reason !== 'found';
      await this.setState(r, e.running ? State.STATE_RUNNING : State.STATE_STOPPED, failed ? e.reason : '');
      await this.announce(r);
    }).catch((err: unknown) => this.log.warn('runtime event failed', { objectId: e.objectId, err }));
  }

  /** A container the agent did not create becomes an object of its own (origin DISCOVERED). */
  private discover(e: internalv1.RuntimeEvent): ObjectRecord {
    const spec = v1.ObjectSpec.fromPartial(e.spec ?? {});
    if (this.names.has(spec.name)) spec.name = `${spec.name}-${e.objectId.slice(4, 10)}`;
    const now = new Date();
    const rec: ObjectRecord = {
      object: v1.Object.fromPartial({ objectId: e.objectId, spec, state: State.STATE_PENDING, createdAt: now, updatedAt: now, origin: v1.Origin.ORIGIN_DISCOVERED }),
      hasCollectTask: false,
      deleteRequested: false,
      queue: Promise.resolve(),
    };
    this.objects.set(e.objectId, rec);
    this.names.set(spec.name, e.objectId);
    this.log.info('container discovered', { objectId: e.objectId, name: spec.name, image: spec.container?.image });
    return rec;
  }

  /**
   * Gives the collector this object's task, bound to its current cgroup and
   * pid, at its push rate. One it already has is kept (a collector that did
   * not restart); with replace, made anew (a container that started again
   * has a new pid).
   */
  private async giveCollectTask(rec: ObjectRecord, replace = false): Promise<void> {
    const { collector } = this.peers;
    const objectId = rec.object.objectId;
    if (replace && rec.hasCollectTask) await collector.call('deleteTask', { objectId }, { timeoutMs: PEER_TIMEOUT_MS }).catch(() => undefined);
    const target = { objectId, kind: rec.object.spec?.kind ?? v1.Kind.KIND_UNSPECIFIED, cgroup: rec.runtime?.cgroup, pid: rec.runtime?.pid ?? 0, host: false };
    // Claimed before the call, so that cleanup never takes a task being made for a dead one.
    rec.hasCollectTask = true;
    await collector.call('createTask', target, { timeoutMs: PEER_TIMEOUT_MS }).catch((err: unknown) => {
      if (err instanceof AlreadyExistsError) return;
      rec.hasCollectTask = false;
      throw err;
    });
    if (rec.object.pushing) await collector.call('setPush', { objectId, intervalMs: rec.object.pushIntervalMs }, { timeoutMs: PEER_TIMEOUT_MS });
  }

  /** The workload went away outside the agent: no tasks, no name, DELETED. */
  private async forget(rec: ObjectRecord, reason: string): Promise<void> {
    const objectId = rec.object.objectId;
    if (rec.object.pushing) await this.peers.reporter.call('stopReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS }).catch(() => undefined);
    if (rec.hasCollectTask) await this.peers.collector.call('deleteTask', { objectId }, { timeoutMs: PEER_TIMEOUT_MS }).catch(() => undefined);
    rec.hasCollectTask = false;
    rec.object.pushing = false;
    rec.object.pushIntervalMs = 0;
    rec.runtime = undefined;
    rec.object.pid = 0;
    this.names.delete(rec.object.spec?.name ?? '');
    await this.setState(rec, State.STATE_DELETED, reason === 'removed' ? '' : reason);
    await this.announce(rec);
  }

  /** Stops taking events and waits for the queued ones, at most timeoutMs. */
  async drain(timeoutMs: number): Promise<void> {
    this.accepting = false;
    this.runtimeStream?.cancel();
    const all = Promise.allSettled([...this.objects.values()].map((r) => r.queue));
    await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs))]);
  }

  // ---- publish: synchronous checks, then the event goes on the object's queue

  async publish(req: internalv1.PublishRequest): Promise<v1.EventAck> {
    if (!this.accepting) throw new UnavailableError('agent is shutting down');
    if (req.create) return this.publishCreate(req.create);
    const p = this.plan(req);
    const ack = await this.enqueue(p.rec, p.type, '', req, p.run, p.undo);
    return p.wait ? this.awaitAck(ack.eventId) : ack;
  }

  /** What an event other than a create does, to which object; throws when the object cannot take it now. */
  private plan(req: internalv1.PublishRequest): { rec: ObjectRecord; type: v1.EventType; wait: boolean; run: () => Promise<void>; undo?: () => void } {
    if (req.update) {
      const u = req.update;
      const rec = this.live(u.objectId, 'update');
      this.requireManaged(rec, 'update');
      return { rec, type: EventType.EVENT_TYPE_UPDATE, wait: u.wait, run: () => this.runUpdate(rec, u) };
    }
    if (req.delete) {
      const rec = this.existing(req.delete.objectId);
      if (rec.object.state === State.STATE_DELETED || rec.deleteRequested) throw new FailedPreconditionError(`object ${rec.object.objectId} is already deleted`);
      this.requireManaged(rec, 'delete');
      rec.deleteRequested = true;
      return { rec, type: EventType.EVENT_TYPE_DELETE, wait: req.delete.wait, run: () => this.runDelete(rec), undo: () => (rec.deleteRequested = false) };
    }
    if (req.pushOn) {
      const p = req.pushOn;
      const rec = this.live(p.objectId, 'push');
      return { rec, type: EventType.EVENT_TYPE_PUSH_ON, wait: p.wait, run: () => this.runPushOn(rec, p.intervalMs) };
    }
    if (req.pushOff) {
      const rec = this.live(req.pushOff.objectId, 'push off');
      return { rec, type: EventType.EVENT_TYPE_PUSH_OFF, wait: req.pushOff.wait, run: () => this.runPushOff(rec) };
    }
    throw new InvalidArgumentError('event', 'one of create, update, delete, push_on, push_off is required');
  }

  /** Creates in flight by request_id: a repeat that arrives before the first is recorded waits for it. */
  private readonly creating = new Map<string, Promise<v1.EventAck>>();

  private async publishCreate(c: v1.CreateRequest): Promise<v1.EventAck> {
    if (!c.spec) throw new InvalidArgumentError('spec', 'required');
    if (c.requestId !== '') {
      const seen = this.events.forRequest(c.requestId);
      if (seen) return c.wait ? this.awaitAck(seen.eventId) : this.ack(seen.eventId);
      const inFlight = this.creating.get(c.requestId);
      if (inFlight) {
        const first = await inFlight;
        return c.wait ? this.awaitAck(first.eventId) : this.ack(first.eventId);
      }
    }
    const made = this.create(c.spec, c.requestId);
    if (c.requestId !== '') {
      this.creating.set(c.requestId, made);
      void made.then(
        () => this.creating.delete(c.requestId),
        () => this.creating.delete(c.requestId),
      );
    }
    const ack = await made;
    return c.wait ? this.awaitAck(ack.eventId) : ack;
  }

  /** The object's record (PENDING), then the event, both in the store before the ack; nothing runs unless both are. */
  private async create(spec: v1.ObjectSpec, requestId: string): Promise<v1.EventAck> {
    const name = spec.name;
    const holder = this.names.get(name);
    if (holder !== undefined) throw new AlreadyExistsError(`name ${JSON.stringify(name)} is in use by ${holder}`);
    if (spec.cgroup) this.requireOwnCgroup(spec.cgroup.path);
    const objectId = newId('obj');
    const now = new Date();
    const rec: ObjectRecord = {
      object: {
        objectId,
        spec,
        state: State.STATE_PENDING,
        runtimeId: '',
        pid: 0,
        createdAt: now,
        updatedAt: now,
        lastError: '',
        pushing: false,
        pushIntervalMs: 0,
        appliedResources: undefined,
        origin: v1.Origin.ORIGIN_CREATED,
      },
      hasCollectTask: false,
      deleteRequested: false,
      queue: Promise.resolve(),
    };
    this.objects.set(objectId, rec);
    this.names.set(name, objectId);
    const unmake = (): void => {
      this.objects.delete(objectId);
      this.names.delete(name);
    };
    try {
      await this.record(rec);
    } catch (err) {
      unmake();
      throw err;
    }
    try {
      return await this.enqueue(rec, EventType.EVENT_TYPE_CREATE, requestId, undefined, () => this.runCreate(rec));
    } catch (err) {
      unmake();
      // If this fails too, the PENDING record comes back after a restart as a FAILED object, to be deleted.
      await this.records.deleteObject(objectId).catch(() => undefined);
      throw err;
    }
  }

  /**
   * A cgroup object's group is its own: not another's, not inside or around
   * another's (deleting one would take the other's with it, or fail half-way).
   * Checked in the same turn as the object is claimed, so two creates cannot race past it.
   */
  private requireOwnCgroup(path: string): void {
    for (const { object } of this.objects.values()) {
      const other = object.spec?.cgroup?.path;
      if (other === undefined || object.state === State.STATE_DELETED) continue;
      if (other === path) throw new AlreadyExistsError(`spec.cgroup.path: cgroup ${path} is held by ${object.objectId}`);
      if (path.startsWith(`${other}/`)) throw new FailedPreconditionError(`spec.cgroup.path: ${path} is inside cgroup ${other} of ${object.objectId}; cgroup objects may not nest`);
      if (other.startsWith(`${path}/`)) throw new FailedPreconditionError(`spec.cgroup.path: ${path} would hold cgroup ${other} of ${object.objectId}; cgroup objects may not nest`);
    }
  }

  private existing(objectId: string): ObjectRecord {
    const rec = this.objects.get(objectId);
    if (!rec) throw new NotFoundError(`no object ${objectId}`);
    return rec;
  }

  /** An object that can still take events: not deleted, not being deleted, not failed. */
  private live(objectId: string, what: string): ObjectRecord {
    const rec = this.existing(objectId);
    if (rec.object.state === State.STATE_DELETED || rec.deleteRequested) throw new FailedPreconditionError(`cannot ${what} object ${objectId}: it is deleted`);
    if (rec.object.state === State.STATE_FAILED) throw new FailedPreconditionError(`cannot ${what} object ${objectId}: it failed (${rec.object.lastError}); delete it`);
    return rec;
  }

  /** A container the agent only discovered is someone else's: watched, not changed, unless AGENT_DISCOVER_MANAGE allows it. */
  private requireManaged(rec: ObjectRecord, what: string): void {
    if (rec.object.origin !== v1.Origin.ORIGIN_DISCOVERED || this.opts.discoverManage) return;
    throw new FailedPreconditionError(`cannot ${what} object ${rec.object.objectId}: not managed by this agent (a discovered container; AGENT_DISCOVER_MANAGE=true allows it)`);
  }

  /** A new event: recorded in the store, then queued; the ack answers only what is recorded. */
  private async enqueue(rec: ObjectRecord, type: v1.EventType, requestId: string, request: internalv1.PublishRequest | undefined, run: () => Promise<void>, undo?: () => void): Promise<v1.EventAck> {
    const eventId = newId('evt');
    const event: v1.Event = { eventId, objectId: rec.object.objectId, type, status: EventStatus.EVENT_STATUS_QUEUED, error: '', requestId, createdAt: new Date(), finishedAt: undefined };
    try {
      await this.events.add(event, request);
    } catch (err) {
      undo?.();
      throw err;
    }
    this.schedule(rec, event, run);
    return this.ack(eventId);
  }

  /** Runs a recorded event on its object's queue, in order with the object's other events. */
  private schedule(rec: ObjectRecord, event: v1.Event, run: () => Promise<void>): void {
    const { eventId, type } = event;
    // The event carries the caller's trace across the asynchronous hop.
    const caller = context.active();
    const token = Symbol(eventId);
    this.waiting.set(token, Date.now());
    const attributes = { 'agent.object_id': rec.object.objectId, 'agent.event_id': eventId, 'agent.object.kind': v1.Kind[rec.object.spec?.kind ?? 0] ?? '' };
    const finished = rec.queue.then(() =>
      context.with(caller, () =>
        traced(`agentcore ${EventType[type]}`, attributes, async () => {
          this.waiting.delete(token);
          event.status = EventStatus.EVENT_STATUS_RUNNING;
          let failure: unknown;
          try {
            await run();
          } catch (err) {
            failure = err;
            this.log.warn('event failed', { eventId, objectId: rec.object.objectId, type: EventType[type], error: errorMessage(err) });
          }
          const outcome = failure === undefined ? EventStatus.EVENT_STATUS_SUCCEEDED : EventStatus.EVENT_STATUS_FAILED;
          await this.events.finish(event, outcome, failure === undefined ? '' : errorMessage(failure)).catch((err: unknown) => this.log.error('event outcome not recorded', { eventId, reason: errorMessage(err) }));
          if (failure !== undefined) throw failure;
        }).catch(() => undefined),
      ),
    );
    rec.queue = finished;
    this.done.set(eventId, finished);
    void finished.then(() => this.done.delete(eventId));
  }

  private ack(eventId: string): v1.EventAck {
    const e = this.events.get(eventId);
    const rec = e ? this.objects.get(e.objectId) : undefined;
    return {
      eventId,
      objectId: e?.objectId ?? '',
      state: rec?.object.state ?? State.STATE_UNSPECIFIED,
      status: e?.status ?? EventStatus.EVENT_STATUS_UNSPECIFIED,
      error: e?.error ?? '',
    };
  }

  private async awaitAck(eventId: string): Promise<v1.EventAck> {
    const p = this.done.get(eventId);
    if (p) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), this.opts.waitTimeoutMs)));
      const outcome = await Promise.race([p.then(() => 'done' as const), timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') throw new DeadlineExceededError(`event ${eventId} still running after ${this.opts.waitTimeoutMs} ms; poll GetEvent`);
    }
    return this.ack(eventId);
  }

  // ---- flows

  private async runCreate(rec: ObjectRecord): Promise<void> {
    const { manager } = this.peers;
    const objectId = rec.object.objectId;
    try {
      const rt = await manager.call('createObject', { objectId, spec: rec.object.spec }, { timeoutMs: this.opts.waitTimeoutMs });
      this.setRuntime(rec, rt);
    } catch (err) {
      await this.setState(rec, State.STATE_FAILED, errorMessage(err));
      await this.announce(rec);
      throw err;
    }
    try {
      await this.giveCollectTask(rec);
    } catch (err) {
      // No half-made object: undo the create.
      await manager.call('deleteObject', { objectId, spec: rec.object.spec }, { timeoutMs: this.opts.waitTimeoutMs }).catch((e: unknown) => this.log.error('undo create failed', { objectId, err: e }));
      await this.setState(rec, State.STATE_FAILED, `collect task: ${errorMessage(err)}`);
      await this.announce(rec);
      throw err;
    }
    // A workload that ended already is STOPPED with its status: it was made.
    const exitCode = rec.runtime?.running === false ? rec.runtime.exitCode : undefined;
    await this.setState(rec, rec.runtime?.running === false ? State.STATE_STOPPED : State.STATE_RUNNING, exitCode ? `exited with code ${exitCode}` : '');
    await this.announce(rec);
  }

  /** The reporter tells the upstream; a reporter that is down does not fail the flow. */
  private async announce(rec: ObjectRecord): Promise<void> {
    await this.peers.reporter
      .call('announce', v1.Object.fromPartial(rec.object), { timeoutMs: PEER_TIMEOUT_MS })
      .catch((err: unknown) => this.log.warn('announce to reporter failed', { objectId: rec.object.objectId, reason: errorMessage(err) }));
  }

  private async runUpdate(rec: ObjectRecord, u: v1.UpdateRequest): Promise<void> {
    this.requireState(rec, 'update', State.STATE_RUNNING, State.STATE_STOPPED);
    const spec = rec.object.spec ?? v1.ObjectSpec.fromPartial({});
    const applied = rec.object.appliedResources ?? { cpus: 0, memoryBytes: 0, pidsLimit: 0 };
    // Work out what changed: only fields that differ from what the object has go to the driver.
    const want = u.resources ?? { cpus: 0, memoryBytes: 0, pidsLimit: 0 };
    const diff = (req: number, cur: number): number => (req === 0 ? 0 : req < 0 ? (cur === 0 ? 0 : -1) : req === cur ? 0 : req);
    const change = { cpus: diff(want.cpus, applied.cpus), memoryBytes: diff(want.memoryBytes, applied.memoryBytes), pidsLimit: diff(want.pidsLimit, applied.pidsLimit) };
    const labelsChanged = Object.keys(u.labels).length > 0;
    if (change.cpus !== 0 || change.memoryBytes !== 0 || change.pidsLimit !== 0) {
      try {
        const rt = await this.peers.manager.call('updateObject', { objectId: rec.object.objectId, resources: change }, { timeoutMs: this.opts.waitTimeoutMs });
        this.setRuntime(rec, rt);
      } catch (err) {
        rec.object.lastError = `update: ${errorMessage(err)}`;
        await this.commit(rec).catch(() => undefined); // the failure reported is the one above
        throw err;
      }
      const res = spec.resources ?? { cpus: 0, memoryBytes: 0, pidsLimit: 0 };
      const next = (req: number, cur: number): number => (req === 0 ? cur : req < 0 ? 0 : req);
      spec.resources = { cpus: next(want.cpus, res.cpus), memoryBytes: next(want.memoryBytes, res.memoryBytes), pidsLimit: next(want.pidsLimit, res.pidsLimit) };
    }
    if (labelsChanged) spec.labels = { ...u.labels };
    rec.object.lastError = '';
    await this.commit(rec);
  }

  private async runDelete(rec: ObjectRecord): Promise<void> {
    const { manager, collector, reporter } = this.peers;
    const objectId = rec.object.objectId;
    const ignoreMissing = (err: unknown): void => {
      if (!(err instanceof NotFoundError)) throw err;
    };
    try {
      if (rec.object.pushing) await reporter.call('stopReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
      if (rec.hasCollectTask) await collector.call('deleteTask', { objectId }, { timeoutMs: PEER_TIMEOUT_MS }).catch(ignoreMissing);
      rec.hasCollectTask = false;
      rec.object.pushing = false;
      rec.object.pushIntervalMs = 0;
      // Also with no runtime (a failed or interrupted create): whatever exists of it goes.
      await manager.call('deleteObject', { objectId, spec: rec.object.spec, runtime: rec.runtime }, { timeoutMs: this.opts.waitTimeoutMs }).catch(ignoreMissing);
    } catch (err) {
      rec.deleteRequested = false; // the user may try again
      rec.object.lastError = `delete: ${errorMessage(err)}`;
      await this.commit(rec).catch(() => undefined); // the failure reported is the one above
      throw err;
    }
    rec.runtime = undefined;
    rec.object.pid = 0;
    this.names.delete(rec.object.spec?.name ?? '');
    await this.setState(rec, State.STATE_DELETED, '');
    await this.announce(rec);
  }

  private async runPushOn(rec: ObjectRecord, intervalMs: number): Promise<void> {
    this.requireState(rec, 'push', State.STATE_RUNNING, State.STATE_STOPPED);
    const objectId = rec.object.objectId;
    await this.peers.collector.call('setPush', { objectId, intervalMs }, { timeoutMs: PEER_TIMEOUT_MS });
    await this.peers.reporter.call('startReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
    rec.object.pushing = true;
    rec.object.pushIntervalMs = intervalMs;
    await this.commit(rec);
  }

  private async runPushOff(rec: ObjectRecord): Promise<void> {
    const objectId = rec.object.objectId;
    if (!rec.object.pushing) return;
    await this.peers.reporter.call('stopReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
    if (rec.hasCollectTask) await this.peers.collector.call('setPush', { objectId, intervalMs: 0 }, { timeoutMs: PEER_TIMEOUT_MS });
    rec.object.pushing = false;
    rec.object.pushIntervalMs = 0;
    await this.commit(rec);
  }

  async pushOnce(objectId: string): Promise<v1.Report> {
    const rec = this.existing(objectId);
    this.requireState(rec, 'report', State.STATE_RUNNING, State.STATE_STOPPED);
    const report = await this.peers.collector.call('collectOnce', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
    await this.peers.reporter.call('reportOnce', report, { timeoutMs: PEER_TIMEOUT_MS });
    return report;
  }

  private requireState(rec: ObjectRecord, what: string, ...states: v1.State[]): void {
    if (!states.includes(rec.object.state)) {
      throw new FailedPreconditionError(`cannot ${what} object ${rec.object.objectId} in state ${State[rec.object.state]}${rec.object.lastError ? ` (${rec.object.lastError})` : ''}`);
    }
  }

  private setRuntime(rec: ObjectRecord, rt: internalv1.RuntimeInfo): void {
    rec.runtime = rt;
    rec.object.runtimeId = rt.runtimeId;
    rec.object.pid = rt.pid;
    rec.object.appliedResources = rt.applied;
    rec.object.exitCode = rt.running ? undefined : rt.exitCode;
  }

  private setState(rec: ObjectRecord, state: v1.State, lastError: string): Promise<void> {
    rec.object.state = state;
    rec.object.lastError = lastError;
    return this.commit(rec);
  }

  /** Records the object's change, then tells watchers: nobody hears of a state the store does not have. */
  private async commit(rec: ObjectRecord): Promise<void> {
    rec.object.updatedAt = new Date();
    await this.record(rec);
    this.changes.emit(rec.object.objectId, v1.Object.fromPartial(rec.object));
  }

  // ---- reads

  getObject(objectId: string): v1.Object {
    return v1.Object.fromPartial(this.existing(objectId).object);
  }

  /** One page of the matching objects, in object_id order, bounded in count and in bytes. */
  listObjects(req: v1.ListRequest): v1.ListResponse {
    const after = req.pageToken === '' ? '' : fromPageToken(req.pageToken);
    const size = req.pageSize === 0 ? LIST_PAGE_SIZE : Math.min(req.pageSize, LIST_MAX_PAGE_SIZE);
    const objects: v1.Object[] = [];
    let bytes = 0;
    for (const id of [...this.objects.keys()].filter((k) => k > after).sort()) {
      const { object } = this.objects.get(id)!;
      if (req.kind !== v1.Kind.KIND_UNSPECIFIED && object.spec?.kind !== req.kind) continue;
      if (!req.includeDeleted && object.state === State.STATE_DELETED) continue;
      const labels = object.spec?.labels ?? {};
      if (!Object.entries(req.labels).every(([k, v]) => labels[k] === v)) continue;
      const o = v1.Object.fromPartial(object);
      const n = v1.Object.encode(o).finish().length;
      // Another match that does not fit: the page ends, and the token says where the next begins.
      if (objects.length === size || (objects.length > 0 && bytes + n > LIST_PAGE_BYTES)) return { objects, nextPageToken: toPageToken(objects[objects.length - 1]!.objectId) };
      objects.push(o);
      bytes += n;
    }
    return { objects, nextPageToken: '' };
  }

  getEvent(eventId: string): v1.Event {
    return { ...this.events.mustGet(eventId) };
  }

  /** State changes from here, reports from the reporter, until cancelled or deleted. */
  async watch(req: v1.WatchRequest, call: ServerWritableStream<v1.WatchRequest, v1.WatchEvent>): Promise<void> {
    const rec = this.existing(req.objectId);
    call.write({ object: v1.Object.fromPartial(rec.object) });
    if (rec.object.state === State.STATE_DELETED) return;
    const reports = this.peers.reporter.client.subscribe({ objectId: req.objectId }, this.peers.reporter.traceMetadata());
    reports.on('data', (r: v1.Report) => call.write({ report: r }));
    reports.on('error', (err: Error) => {
      if (!call.cancelled) this.log.debug('report subscription ended', { objectId: req.objectId, reason: err.message });
    });
    await new Promise<void>((resolve) => {
      const onChange = (o: v1.Object): void => {
        call.write({ object: o });
        if (o.state === State.STATE_DELETED) finish();
      };
      const finish = (): void => {
        this.changes.off(req.objectId, onChange);
        reports.cancel();
        resolve();
      };
      this.changes.on(req.objectId, onChange);
      call.on('cancelled', finish);
    });
  }

  implementation(): internalv1.AgentCoreServer {
    return {
      publish: unary(this.log, (r) => this.publish(r)),
      getObject: unary(this.log, async (r) => this.getObject(r.objectId)),
      listObjects: unary(this.log, async (r) => this.listObjects(r)),
      getEvent: unary(this.log, async (r) => this.getEvent(r.eventId)),
      pushOnce: unary(this.log, (r) => this.pushOnce(r.objectId)),
      watch: serverStream(this.log, (r, call) => this.watch(r, call)),
    };
  }
}

const LIST_PAGE_SIZE = 500;
const LIST_MAX_PAGE_SIZE = 1000;
const LIST_PAGE_BYTES = 2 * 1024 * 1024;
const PAGE_TOKEN_PREFIX = 'after:';

/** Opaque to callers: where the next page begins. */
function toPageToken(lastObjectId: string): string {
  return Buffer.from(PAGE_TOKEN_PREFIX + lastObjectId).toString('base64url');
}

function fromPageToken(token: string): string {
  const text = Buffer.from(token, 'base64url').toString('utf8');
  if (!text.startsWith(PAGE_TOKEN_PREFIX)) throw new InvalidArgumentError('page_token', 'not a token from a previous List');
  return text.slice(PAGE_TOKEN_PREFIX.length);
}

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(8).toString('hex')}`;
}

export async function startAgentCore(
  config: AgentConfig,
  peers: Peers,
  listener: Listener,
): Promise<{ server: RunningServer; core: AgentCore; cluster: ClusterSync; store: KvStore }> {
  const log = new Logger(Module.AgentCore, config.logLevel);
  const store = await retry(log, 'cluster store connect', () => openStore({ clusterUrl: config.clusterUrl, dataDir: config.dataDir, hostId: config.hostId }), 10);
  let server: RunningServer | undefined;
  const core = new AgentCore(
    peers,
    store,
    { hostId: config.hostId, heartbeatMs: config.heartbeatMs, waitTimeoutMs: config.waitTimeoutMs, eventRetention: config.eventRetention, eventRetentionMs: config.eventRetentionMs, discoverManage: config.discoverManage },
    log,
    () => server?.health.set(HealthComponent.Store, false),
  );
  if (store.migrated) log.info('store migrated from the one-file-per-key format', { records: store.migrated });
  server = await startGrpcServer({
    listeners: [listener],
    log,
    services: [{ name: GrpcService.AgentCore, definition: internalv1.AgentCoreService, implementation: core.implementation(), access: INTERNAL_ONLY }],
  });
  // The collector and reporter may still be starting (separate processes).
  await retry(log, 'heartbeat start', () => core.start());
  // As the seed's clusterLoop: records of vanished workloads go, the others are
  // taken back and uploaded, then the watchers are registered.
  const damaged = await core.recover();
  core.follow();
  const cluster = new ClusterSync(store, core, peers.collector, server.health, { hostId: config.hostId, version: AGENT_VERSION, heartbeatMs: config.heartbeatMs, policyPullMs: config.policyPullMs, statsUploadMs: config.statsUploadMs, healthMs: config.healthMs, cleanupMs: config.cleanupMs }, log);
  server.health.setAll(true);
  // Each record that could not be read stays NOT_SERVING under its own name (grpc.health.v1 List shows them).
  for (const d of damaged) server.health.set(`${HealthComponent.DamagedRecord}${d.key}`, false);
  await cluster.start();
  return { server, core, cluster, store };
}
