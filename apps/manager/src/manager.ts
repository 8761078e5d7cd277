import { type AgentConfig, Driver as DriverNames, GrpcService, HealthComponent, Module } from '@agent/option';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import { NotFoundError, InvalidArgumentError, Logger, serverStream, INTERNAL_ONLY, startGrpcServer, unary, type Listener, type RunningServer } from '@agent/grpc-kit';
import { containerFilter, isDiscovering, type DiscoveryEvent, type Driver, type Discovering, type EnforcementMode, type Runtime, type RuntimeEvent } from '@agent/drivers';
import { driverFor, fromRuntimeInfo, kindOfDriver, kindRow, phaseState, toChange, toRuntimeInfo, toWorkload, type HostDrivers } from '@agent/kinds';
import { healthv1, internalv1, policyv1, v1 } from '@agent/proto';

/** How long after a Delete the workload's stop event is still taken as the Delete's. */
const DELETE_EVENT_GRACE_MS = 10_000;

/**
 * The manager: objects through drivers. It keeps no copy of what agentcore
 * owns: every call on an existing workload brings its kind and recorded
 * runtime, and every runtime event goes to agentcore, which decides whether it
 * is news (a stop during a Delete is not).
 */
export class ManagerService {
  private readonly watchers = new Set<ServerWritableStream<internalv1.Empty, internalv1.RuntimeEvent>>();

  constructor(
    private readonly drivers: Pick<HostDrivers, 'objects' | 'network'>,
    private readonly log: Logger,
  ) {
    for (const d of drivers.objects.values()) {
      if (d.capabilities.events) d.watch((e) => this.onRuntimeEvent(e));
    }
  }

  /** Discovered containers: container id -> object id, and what each watcher is told on connecting. */
  private readonly discovered = new Map<string, internalv1.RuntimeEvent>();
  /** Objects being deleted (until: a while after, for the runtime's late stop event), so their stop is not told as their own. */
  private readonly deleting = new Map<string, number>();

  /**
   * Watches the host for workloads the agent did not create (containers: the
   * drivers that discover). The object id is derived from the workload's id,
   * so one is never adopted twice, not even across restarts.
   */
  async startDiscovery(spec: string): Promise<void> {
    const filter = containerFilter(spec);
    if (!filter) return;
    await Promise.all([...this.drivers.objects.values()].filter(isDiscovering).map((d) => this.discoverWith(d, filter, spec)));
  }

  private async discoverWith(driver: Driver & Discovering, filter: NonNullable<ReturnType<typeof containerFilter>>, spec: string): Promise<void> {
    const row = kindOfDriver(driver.name);
    if (!row) return;
    for (let delay = 250; ; delay = Math.min(delay * 2, 10_000)) {
      try {
        await driver.discover(filter, (e) => this.onDiscovery(row.kind, row.field, e));
        this.log.info('discovering containers', { filter: spec, found: this.discovered.size });
        return;
      } catch (err) {
        this.log.warn('container discovery failed; retrying', { reason: (err as Error).message, delayMs: delay });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private onDiscovery(kind: v1.Kind, field: string, e: DiscoveryEvent): void {
    const objectId = `obj-${e.id.slice(0, 16)}`;
    let ev: internalv1.RuntimeEvent;
    if ((e.kind === 'found' || e.kind === 'started') && e.runtime && e.container) {
      ev = {
        objectId,
        running: e.runtime.running,
        reason: e.kind,
        pid: e.runtime.pid,
        removed: false,
        spec: v1.ObjectSpec.fromPartial({
          name: e.container.name,
          kind,
          labels: e.container.labels,
          [field]: { image: e.container.image, command: [...e.container.command], env: [] },
        }),
        runtime: toRuntimeInfo(e.runtime),
        state: v1.State.STATE_UNSPECIFIED,
        limitsRefused: '',
      };
      this.discovered.set(e.id, ev);
    } else {
      const known = this.discovered.get(e.id);
      if (!known) return;
      const removed = e.kind === 'removed';
      if (removed) this.discovered.delete(e.id);
      ev = { ...known, running: false, reason: e.reason, pid: 0, removed };
      if (!removed) this.discovered.set(e.id, { ...known, running: false, reason: e.reason });
    }
    for (const w of this.watchers) w.write(ev);
  }

  private onRuntimeEvent(e: RuntimeEvent): void {
    if (e.limits) {
      this.log.warn('limit change reverted', { objectId: e.objectId, reason: e.limits.refused });
      const ev: internalv1.RuntimeEvent = {
        objectId: e.objectId,
        running: e.running,
        reason: e.reason,
        pid: e.pid,
        removed: false,
        state: v1.State.STATE_UNSPECIFIED,
        limitsRefused: e.limits.refused,
        applied: { ...e.limits.applied },
      };
      for (const w of this.watchers) w.write(ev);
      return;
    }
    // The stop a Delete causes is the Delete's (its event may come after the Delete has returned).
    if (!e.running && (this.deleting.get(e.objectId) ?? 0) > Date.now()) this.log.debug('object stopped by its delete', { objectId: e.objectId, reason: e.reason });
    else this.log.info(e.running ? 'object started by itself' : 'object stopped by itself', { objectId: e.objectId, reason: e.reason });
    const ev: internalv1.RuntimeEvent = { objectId: e.objectId, running: e.running, reason: e.reason, pid: e.pid, removed: false, exitCode: e.exitCode, state: phaseState(e.phase), limitsRefused: '' };
    for (const w of this.watchers) w.write(ev);
  }

  private watchRuntime(call: ServerWritableStream<internalv1.Empty, internalv1.RuntimeEvent>): Promise<void> {
    // A new watcher (agentcore starting, or reconnecting) first hears what is known.
    for (const ev of this.discovered.values()) call.write(ev);
    this.watchers.add(call);
    return new Promise((resolve) => {
      const done = (): void => {
        this.watchers.delete(call);
        resolve();
      };
      call.on('cancelled', done);
      call.on('close', done);
    });
  }

  driverFor(kind: v1.Kind): Driver {
    return driverFor(this.drivers, kind);
  }

  async create(req: internalv1.CreateObjectRequest): Promise<internalv1.RuntimeInfo> {
    const spec = req.spec;
    if (!spec) throw new InvalidArgumentError('spec', 'required');
    const driver = this.driverFor(spec.kind);
    const span = trace.getActiveSpan();
    span?.setAttributes({ 'agent.object_id': req.objectId, 'agent.object.kind': v1.Kind[spec.kind] ?? '' });
    const runtime = await driver.create(toWorkload(req.objectId, spec));
    span?.setAttribute(kindRow(spec.kind).runtimeAttribute, runtime.runtimeId);
    if (runtime.pid > 0) span?.setAttribute('process.pid', runtime.pid);
    this.log.info('object created', { objectId: req.objectId, driver: driver.name, runtimeId: runtime.runtimeId, pid: runtime.pid });
    return toRuntimeInfo(runtime);
  }

  async update(req: internalv1.UpdateObjectRequest): Promise<internalv1.RuntimeInfo> {
    const rt = recorded(req);
    const runtime = await this.driverFor(req.kind).update(rt, toChange(req.resources, rt.applied), req.spec ? toWorkload(req.objectId, req.spec) : undefined);
    this.log.debug('object updated', { objectId: req.objectId, applied: runtime.applied });
    return toRuntimeInfo(runtime);
  }

  /**
   * The recorded workload is removed, then whatever else carries the
   * object's marks: a failed or interrupted create leaves nothing behind its Delete.
   */
  async delete(req: internalv1.DeleteObjectRequest): Promise<internalv1.Empty> {
    if (!req.spec) throw new InvalidArgumentError('spec', 'required');
    const driver = this.driverFor(req.spec.kind);
    const runtime = req.runtime ? fromRuntimeInfo(req.runtime) : undefined;
    const now = Date.now();
    for (const [id, until] of this.deleting) if (until <= now) this.deleting.delete(id);
    this.deleting.set(req.objectId, Infinity);
    try {
      if (runtime) await driver.remove(runtime);
      await driver.purge(toWorkload(req.objectId, req.spec));
    } finally {
      this.deleting.set(req.objectId, Date.now() + DELETE_EVENT_GRACE_MS);
    }
    if (runtime) this.discovered.delete(runtime.runtimeId);
    this.log.info('object deleted', { objectId: req.objectId });
    return {};
  }

  async adopt(req: internalv1.AdoptObjectRequest): Promise<internalv1.RuntimeInfo> {
    const spec = req.spec;
    if (!spec) throw new InvalidArgumentError('spec', 'required');
    const driver = this.driverFor(spec.kind);
    const runtime = await driver.adopt(toWorkload(req.objectId, spec), req.runtime ? fromRuntimeInfo(req.runtime) : undefined);
    this.log.info('object adopted', { objectId: req.objectId, driver: driver.name, runtimeId: runtime.runtimeId, pid: runtime.pid, running: runtime.running });
    return toRuntimeInfo(runtime);
  }

  async inspect(req: internalv1.InspectObjectRequest): Promise<internalv1.RuntimeInfo> {
    return toRuntimeInfo(await this.driverFor(req.kind).inspect(recorded(req)));
  }

  async programNetwork(req: internalv1.NetworkState): Promise<internalv1.NetworkResult> {
    const r = await this.drivers.network.program({
      groups: req.groups,
      endpoints: req.endpoints.map((e) => ({
        objectId: e.objectId,
        ip: e.ip || undefined,
        mac: e.mac || undefined,
        groups: e.groups,
        mode: modeOf(e.mode),
        pending: e.pending,
        quarantined: e.quarantined,
      })),
      rules: req.rules.map((r) => ({ id: r.id, from: r.from, to: r.to, ports: r.ports, action: r.action === policyv1.Action.ACTION_DENY ? 'deny' : 'allow' })),
      revoke: req.revoke,
    });
    if (r.changes > 0) this.log.info('network programmed', { changes: r.changes, present: r.present, endpoints: req.endpoints.length, rules: req.rules.length });
    // The policy is in place either way: a connection left standing is logged, not failed.
    if (r.cutError) this.log.warn('connections not cut', { reason: r.cutError, cut: r.cut, revoke: req.revoke });
    else if (r.cut > 0) this.log.info('connections cut', { cut: r.cut, revoke: req.revoke });
    void r.quarantineCut?.then((q) => {
      if (q.cutError) this.log.warn('connections of quarantined workloads not cut (their packets are dropped all the same)', { reason: q.cutError, cut: q.cut });
      else if (q.cut > 0) this.log.info('connections of quarantined workloads cut', { cut: q.cut });
    });
    return { changes: r.changes, present: r.present, cut: r.cut };
  }

  /** What every workload driver keeps of objects that are gone. */
  async sweep(req: internalv1.SweepRequest): Promise<internalv1.SweepResult> {
    const keep = new Set(req.keep);
    const before = req.madeBefore ?? new Date(0);
    let removed = 0;
    for (const d of this.drivers.objects.values()) removed += await d.sweep(keep, before);
    if (removed > 0) this.log.info('leftovers of gone objects removed', { removed });
    return { removed };
  }

  /** What each kind's driver cannot set on this host (read again on each call: it is small). */
  hostLimits(): internalv1.HostLimitsInfo {
    const kinds: internalv1.KindLimits[] = [];
    for (const d of this.drivers.objects.values()) {
      const row = kindOfDriver(d.name);
      if (row) kinds.push({ kind: row.kind, lacking: { ...d.unsupportedLimits() } });
    }
    return { kinds };
  }

  async readRuleHits(): Promise<internalv1.RuleHits> {
    return { hits: Object.fromEntries(await this.drivers.network.ruleHits()) };
  }

  implementation(): internalv1.ManagerServer {
    return {
      createObject: unary(this.log, (r) => this.create(r)),
      updateObject: unary(this.log, (r) => this.update(r)),
      deleteObject: unary(this.log, (r) => this.delete(r)),
      inspectObject: unary(this.log, (r) => this.inspect(r)),
      adoptObject: unary(this.log, (r) => this.adopt(r)),
      watchRuntime: serverStream(this.log, (_r, call) => this.watchRuntime(call)),
      programNetwork: unary(this.log, (r) => this.programNetwork(r)),
      readRuleHits: unary(this.log, () => this.readRuleHits()),
      sweep: unary(this.log, (r) => this.sweep(r)),
      hostLimits: unary(this.log, async () => this.hostLimits()),
    };
  }
}

const MODES: Partial<Record<policyv1.Mode, EnforcementMode>> = { [policyv1.Mode.MODE_DISCOVER]: 'discover', [policyv1.Mode.MODE_MONITOR]: 'monitor', [policyv1.Mode.MODE_PROTECT]: 'protect' };

function modeOf(m: policyv1.Mode): EnforcementMode {
  const mode = MODES[m];
  if (!mode) throw new InvalidArgumentError('endpoints.mode', `one of MODE_DISCOVER, MODE_MONITOR, MODE_PROTECT: ${m}`);
  return mode;
}

/** The runtime agentcore recorded, which a call on an existing workload must bring. */
function recorded(req: { readonly objectId: string; readonly runtime?: internalv1.RuntimeInfo }): Runtime {
  if (!req.runtime) throw new NotFoundError(`object ${req.objectId} has no recorded workload`);
  return fromRuntimeInfo(req.runtime);
}

export async function startManager(config: AgentConfig, drivers: HostDrivers, listener: Listener): Promise<RunningServer> {
  const log = new Logger(Module.Manager, config.logLevel);
  const svc = new ManagerService(drivers, log);
  const server = await startGrpcServer({
    listeners: [listener],
    log,
    services: [{ name: GrpcService.Manager, definition: internalv1.ManagerService, implementation: svc.implementation(), access: INTERNAL_ONLY }],
  });
  server.health.setAll(true);
  // Docker is optional: without it container creates fail clearly, the rest
  // works; grpc.health.v1 tells under "agent.docker" whether it is reachable.
  const docker = drivers.objects.get(DriverNames.Docker);
  if (docker) await followHealth(server, log, HealthComponent.Docker, docker, config.healthMs, 'docker is not reachable; container creates will fail');
  // nftables is needed only once a policy selects a container: "agent.network" tells.
  await followHealth(server, log, HealthComponent.Network, drivers.network, config.healthMs, 'nftables is not usable; network policy cannot be enforced');
  void svc.startDiscovery(config.discover);
  return server;
}

/** A driver's health under its component name: checked now and every ms, a warning when it turns bad. */
async function followHealth(server: RunningServer, log: Logger, component: string, driver: Driver, ms: number, warning: string): Promise<void> {
  const check = (): Promise<void> =>
    driver.health().then(
      () => server.health.set(component, true),
      (err: Error) => {
        if (server.health.get(component) !== healthv1.HealthCheckResponse_ServingStatus.NOT_SERVING) log.warn(warning, { reason: err.message });
        server.health.set(component, false);
      },
    );
  await check();
  setInterval(() => void check(), ms).unref();
}
