import type { ServerWritableStream } from '@grpc/grpc-js';
import { AGENT_VERSION, type AgentConfig, GrpcService, HealthComponent, Module } from '@agent/option';
import {
  FailedPreconditionError,
  InvalidArgumentError,
  errorMessage,
  Logger,
  UnavailableError,
  retry,
  serverStream,
  startGrpcServer,
  unary,
  type RunningServer,
  type Listener,
  INTERNAL_ONLY,
  atMost,
  type Encoded,
} from '@agent/grpc-kit';
import { internalv1, policyv1, v1 } from '@agent/proto';
import { openStore, type KvStore } from '@agent/store';
import { ClusterSync, type CoreView } from './cluster';
import { publishCoreMetrics } from './core-metrics';
import { EventLog } from './events';
import { Flows } from './flows';
import { HostLimits } from './host-limits';
import { LearnedRules } from './learning';
import { ObjectTable } from './objects';
import { PeerRepair } from './peer-repair';
import type { Peers } from './peers';
import { PolicyBook } from './policy';
import { Records, type DamagedRecord } from './records';
import { Recovery } from './recovery';
import { RuntimeFollower } from './runtime-follower';
import { Scheduler } from './scheduler';
import { Segmentation, segmentable, segmentedKinds } from './segmentation';
import { Traffic } from './traffic';

const { State, EventType } = v1;

/**
 * agentcore: owns objects and events, and drives the flows of the design
 * (create, update, delete, push on/off/once, heartbeat) through the manager,
 * collector and reporter. Events of one object run in order; different
 * objects proceed concurrently.
 */
export class AgentCore implements CoreView {
  private readonly objects: ObjectTable;
  private readonly events: EventLog;
  private readonly scheduler: Scheduler;
  private readonly flows: Flows;
  private readonly recovery: Recovery;
  private readonly follower: RuntimeFollower;
  private readonly repair: PeerRepair;
  private readonly policy: PolicyBook;
  private readonly network: Segmentation;
  private readonly learned: LearnedRules;
  private readonly records: Records;
  private readonly traffic: Traffic;
  private readonly hostLimits: HostLimits;
  /** Creates in flight by request_id: a repeat that arrives before the first is recorded waits for it. */
  private readonly creating = new Map<string, Promise<v1.EventAck>>();
  private accepting = true;

  constructor(
    private readonly peers: Peers,
    store: KvStore,
    opts: { hostId: string; heartbeatMs: number; waitTimeoutMs: number; eventRetention: number; eventRetentionMs: number; discoverManage: boolean },
    private readonly log: Logger,
    /** Told of every write the store refuses. */
    onStoreRefused?: (err: Error) => void,
  ) {
    const records = new Records(store, opts.hostId, log, onStoreRefused);
    this.records = records;
    this.objects = new ObjectTable(records, opts);
    this.events = new EventLog(records, { count: opts.eventRetention, ageMs: opts.eventRetentionMs }, log);
    this.scheduler = new Scheduler(this.objects, this.events, opts, log);
    this.learned = new LearnedRules(records, opts.hostId, log);
    this.network = new Segmentation(this.objects, peers, this.learned, (name, fn) => this.system(name, fn), { hostId: opts.hostId }, log);
    this.traffic = new Traffic(peers.collector, (logged) => this.network.describe(logged), (flows) => this.shipFlows(flows), log);
    this.network.onDataplane = (present) => this.traffic.setActive(present);
    this.flows = new Flows(this.objects, peers, opts, log, this.network);
    this.recovery = new Recovery(this.objects, this.events, this.flows, this.scheduler, peers, opts, log);
    this.follower = new RuntimeFollower(this.objects, this.flows, peers.manager, log);
    this.repair = new PeerRepair(this.objects, this.flows, peers, opts, log);
    this.policy = new PolicyBook(records, (name, fn) => this.system(name, fn), log);
    this.hostLimits = new HostLimits(peers.manager, log);
  }

  // ---- what the cluster sync reads and asks for

  system(name: string, fn: () => Promise<void> | void): Promise<void> {
    return this.scheduler.system(name, fn);
  }

  oldestWaitMs(): number {
    return this.scheduler.oldestWaitMs();
  }

  summary(): Record<string, number> {
    return this.objects.summary();
  }

  dropDeadTasks(): Promise<number> {
    return this.repair.dropDeadTasks();
  }

  dropDeletedBefore(t: number): number {
    return this.objects.dropDeletedBefore(t);
  }

  checkPeers(): Promise<void> {
    return this.repair.checkPeers();
  }

  /** GET /metrics shows the event queue and the objects; the function returned stops it. */
  publishMetrics(): () => void {
    return publishCoreMetrics(this.objects, this.scheduler);
  }

  // ---- start and stop

  /** The heartbeat (a host collect task plus a host report task); what limits the host lacks is asked too. */
  async start(): Promise<void> {
    await Promise.all([this.repair.startHeartbeat(), this.hostLimits.load()]);
  }

  /** After a restart: the recorded objects taken back, the interrupted events resumed; returns the records that could not be read. */
  recover(): Promise<DamagedRecord[]> {
    return this.recovery.recover();
  }

  /**
   * After recover: what the drivers keep of objects that no longer exist goes
   * (best effort: a failure is only logged). An object whose record could not
   * be read keeps what is its: the record is left for an operator.
   */
  async sweep(damaged: readonly DamagedRecord[]): Promise<void> {
    const madeBefore = new Date();
    const keep = [...this.objects.all()].filter((r) => r.object.state !== State.STATE_DELETED).map((r) => r.object.objectId);
    for (const d of damaged) if (d.objectId !== undefined) keep.push(d.objectId);
    await this.peers.manager.call('sweep', { keep, madeBefore }, { timeoutMs: 30_000 }).catch((err: unknown) => this.log.warn('leftovers of gone objects not swept', { reason: errorMessage(err) }));
  }

  /** After recover: the network dataplane follows the policy and the objects (until then the kernel keeps enforcing what it had). */
  async startNetwork(): Promise<void> {
    // What was learned applies from the first reconcile: a restart must not drop what Protect lets through by it.
    for (const [host, value] of await this.records.listLearned()) this.learned.changed(host, value);
    await this.network.start(await this.policy.current());
  }

  /** The fleet's policy changed in the cluster store (here or on another agent). */
  policyChanged(value: string | undefined): void {
    void this.network.setPolicy(this.policy.parse(value), { force: value === undefined });
  }

  /** Rules an agent of the fleet (this one too) learned changed in the cluster store. */
  learnedChanged(host: string, value: string | undefined): void {
    this.network.learnedChanged(host, value);
  }

  /** The current policy and the rules learned under it, with each rule's hits as the kernel counted them here. */
  async getPolicy(): Promise<policyv1.Policy> {
    const p = await this.policy.current();
    p.rules.push(...this.learned.effective(p));
    const hits = await this.peers.manager.call('readRuleHits', {}, { timeoutMs: 10_000 }).catch((err: unknown) => {
      this.log.debug('rule hits not read', { reason: errorMessage(err) });
      return { hits: {} as Record<number, number> };
    });
    for (const r of p.rules) r.hits = hits.hits[r.id] ?? 0;
    return p;
  }

  async applyPolicy(p: policyv1.Policy): Promise<policyv1.PolicyStatus> {
    const status = await this.policy.apply(p);
    await this.network.setPolicy(p);
    return status;
  }

  /**
   * Stops (or lets again) all traffic of a container, established
   * connections included; recorded on the object first, answered once the
   * dataplane does it (enforcement FAILED says it could not yet: retried).
   */
  async setQuarantine(req: policyv1.SetQuarantineRequest): Promise<v1.Object> {
    const rec = this.objects.live(req.objectId, 'quarantine');
    if (!segmentable(rec.object)) throw new FailedPreconditionError(`object_id: ${req.objectId} is ${v1.Kind[rec.object.spec?.kind ?? 0]}, which has no address of its own; only ${segmentedKinds()} objects are segmented`);
    if (rec.object.quarantined !== req.quarantined) {
      rec.object.quarantined = req.quarantined;
      await this.objects.commit(rec);
      this.log.info(req.quarantined ? 'container quarantined' : 'quarantine lifted', { objectId: req.objectId });
    }
    await this.network.sync();
    return v1.Object.fromPartial(rec.object);
  }

  /** Flows go upstream (Bus Out, the cluster's stream) through the reporter; it spools them, so a failed call is the only loss. */
  private shipFlows(flows: readonly policyv1.Flow[]): void {
    if (flows.length === 0) return;
    void this.peers.reporter.call('deliverFlows', { flows: [...flows] }).catch((err: unknown) => this.log.warn('flows not handed to the reporter', { count: flows.length, reason: errorMessage(err) }));
  }

  listFlows(req: policyv1.ListFlowsRequest): policyv1.ListFlowsResponse {
    return { flows: this.traffic.list(req) };
  }

  /** Starts following workloads that stop, start, appear or vanish by themselves (after recover). */
  follow(): void {
    this.follower.start();
  }

  /** Stops taking events and waits for the queued ones, at most timeoutMs. */
  async drain(timeoutMs: number): Promise<void> {
    this.accepting = false;
    this.follower.stop();
    // The dataplane stays as it is: the kernel keeps enforcing while the agent is away.
    this.network.stop();
    this.traffic.setActive(false);
    await atMost(Promise.allSettled([...this.objects.all()].map((r) => r.queue)), timeoutMs);
  }

  // ---- publish: synchronous checks, then the event goes on the object's queue

  async publish(req: internalv1.PublishRequest): Promise<v1.EventAck> {
    if (!this.accepting) throw new UnavailableError('agent is shutting down');
    if (req.create) return this.publishCreate(req.create);
    if (req.update) await this.hostLimits.ready(req.update.resources);
    const p = this.flows.plan(req);
    // A limit the host cannot set is refused now, as any other the object cannot take.
    if (req.update) this.hostLimits.check(p.rec.object.spec?.kind ?? v1.Kind.KIND_UNSPECIFIED, 'resources', req.update.resources);
    const ack = await this.scheduler.enqueue(p.rec, p.type, '', req, p.run, p.undo);
    return p.wait ? this.scheduler.awaitAck(ack.eventId) : ack;
  }

  private async publishCreate(c: v1.CreateRequest): Promise<v1.EventAck> {
    if (!c.spec) throw new InvalidArgumentError('spec', 'required');
    const { scheduler } = this;
    if (c.requestId !== '') {
      const seen = this.events.forRequest(c.requestId);
      if (seen) return c.wait ? scheduler.awaitAck(seen.eventId) : scheduler.ack(seen.eventId);
      const inFlight = this.creating.get(c.requestId);
      if (inFlight) {
        const first = await inFlight;
        return c.wait ? scheduler.awaitAck(first.eventId) : scheduler.ack(first.eventId);
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
    return c.wait ? scheduler.awaitAck(ack.eventId) : ack;
  }

  /** The object's record (PENDING), then the event, both in the store before the ack; nothing runs unless both are. */
  private async create(spec: v1.ObjectSpec, requestId: string): Promise<v1.EventAck> {
    await this.hostLimits.ready(spec.resources);
    this.hostLimits.check(spec.kind, 'spec.resources', spec.resources);
    const rec = await this.objects.claim(spec);
    try {
      return await this.scheduler.enqueue(rec, EventType.EVENT_TYPE_CREATE, requestId, undefined, () => this.flows.runCreate(rec));
    } catch (err) {
      await this.objects.unclaim(rec);
      throw err;
    }
  }

  pushOnce(objectId: string): Promise<v1.Report> {
    return this.flows.pushOnce(objectId);
  }

  // ---- reads

  getObject(objectId: string): v1.Object {
    return v1.Object.fromPartial(this.objects.existing(objectId).object);
  }

  /** The object's wire form, as Get sends it (ObjectTable.encoded). */
  encodedObject(objectId: string): Encoded<v1.Object> {
    return this.objects.encoded(objectId);
  }

  /** One page of the matching objects, in object_id order, bounded in count and in bytes. */
  listObjects(req: v1.ListRequest): v1.ListResponse {
    return this.objects.list(req);
  }

  getEvent(eventId: string): v1.Event {
    return { ...this.events.mustGet(eventId) };
  }

  /** State changes from here, reports from the reporter, until cancelled or deleted. */
  async watch(req: v1.WatchRequest, call: ServerWritableStream<v1.WatchRequest, v1.WatchEvent>): Promise<void> {
    const rec = this.objects.existing(req.objectId);
    call.write({ object: v1.Object.fromPartial(rec.object) });
    if (rec.object.state === State.STATE_DELETED) return;
    const reports = this.peers.reporter.client.subscribe({ objectId: req.objectId }, this.peers.reporter.traceMetadata());
    reports.on('data', (r: v1.Report) => call.write({ report: r }));
    reports.on('error', (err: Error) => {
      if (!call.cancelled) this.log.debug('report subscription ended', { objectId: req.objectId, reason: err.message });
    });
    await new Promise<void>((resolve) => {
      const finish = (): void => {
        unsubscribe();
        reports.cancel();
        resolve();
      };
      const unsubscribe = this.objects.onChange(req.objectId, (o) => {
        call.write({ object: o });
        if (o.state === State.STATE_DELETED) finish();
      });
      call.on('cancelled', finish);
    });
  }

  /** Every object, then each change of the table, until cancelled: the apiserver's copy (five processes). */
  private async watchObjects(call: ServerWritableStream<internalv1.Empty, internalv1.ObjectsChange>): Promise<void> {
    const stop = this.objects.onTableChange((c) => call.write(c));
    try {
      const revision = this.objects.revisionNow();
      for (const rec of this.objects.all()) call.write({ revision, object: v1.Object.fromPartial(rec.object), goneId: '', synced: false });
      call.write({ revision, object: undefined, goneId: '', synced: true });
      await new Promise<void>((resolve) => {
        call.on('cancelled', resolve);
        call.on('close', resolve);
      });
    } finally {
      stop();
    }
  }

  implementation(): internalv1.AgentCoreServer {
    return {
      watchObjects: serverStream(this.log, (_r, call) => this.watchObjects(call)),
      // Outcomes waiting to be written (Records.saveSoon) are told only once written: they are, first.
      objectsRevision: unary(this.log, async () => {
        await this.records.flush();
        return { revision: this.objects.revisionNow() };
      }),
      publish: unary(this.log, (r) => this.publish(r)),
      getObject: unary(this.log, async (r) => this.getObject(r.objectId)),
      listObjects: unary(this.log, async (r) => this.listObjects(r)),
      getEvent: unary(this.log, async (r) => this.getEvent(r.eventId)),
      applyPolicy: unary(this.log, (p) => this.applyPolicy(p)),
      getPolicy: unary(this.log, () => this.getPolicy()),
      setQuarantine: unary(this.log, (r) => this.setQuarantine(r)),
      listFlows: unary(this.log, async (r) => this.listFlows(r)),
      watchFlows: serverStream(this.log, (r, call) => this.traffic.watch(r, call)),
      pushOnce: unary(this.log, (r) => this.pushOnce(r.objectId)),
      watch: serverStream(this.log, (r, call) => this.watch(r, call)),
    };
  }
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
  await core.sweep(damaged);
  await core.startNetwork();
  core.follow();
  const cluster = new ClusterSync(store, core, peers.collector, server.health, { hostId: config.hostId, version: AGENT_VERSION, heartbeatMs: config.heartbeatMs, policyPullMs: config.policyPullMs, statsUploadMs: config.statsUploadMs, healthMs: config.healthMs, cleanupMs: config.cleanupMs }, log);
  core.publishMetrics();
  server.health.setAll(true);
  // Each record that could not be read stays NOT_SERVING under its own name (grpc.health.v1 List shows them).
  for (const d of damaged) server.health.set(`${HealthComponent.DamagedRecord}${d.key}`, false);
  await cluster.start();
  return { server, core, cluster, store };
}
