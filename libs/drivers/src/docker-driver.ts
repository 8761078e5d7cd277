import Docker from 'dockerode';
import { Driver as DriverNames, Label, type DriverName } from '@agent/option';
import { AgentError, DriverError, NotFoundError, UnavailableError, traced } from '@agent/grpc-kit';
import { BaseDriver, WORKLOAD_CAPABILITIES, type Capabilities, type Discovering, type Sampler } from './driver';
import type { CgroupDriver } from './cgroup-driver';
import { macFor } from './network/address';
import { asked, dockerHostConfig, dockerRecordOf, limits, notForDocker, requireSupported, withFollowers } from './dimensions';
import { DockerRecord } from './docker-record';
import { checkArgv, checkEnv, fail, redactEnv, SPEC_LIMITS } from './spec-checks';
import type { CgroupRef, ContainerFilter, DiscoveryListener, ResourceChange, Resources, Runtime, RuntimeListener, WorkloadSpec } from './types';

/** KIND_CONTAINER's part of a spec (agent.v1.ContainerSpec). */
export interface ContainerWorkload {
  readonly image: string;
  readonly command: readonly string[];
  readonly env: readonly string[];
}

const IMAGE_RE = /^[a-z0-9][a-z0-9._\-/:@]*$/i;

/** Syntax checks of a container spec at field (e.g. "spec.container"). */
export function validateContainer(c: ContainerWorkload, field: string): void {
  if (c.image === '') fail(`${field}.image`, 'required');
  if (c.image.length > SPEC_LIMITS.imageLength || !IMAGE_RE.test(c.image)) fail(`${field}.image`, 'not a valid image reference');
  checkArgv(`${field}.command`, c.command, false);
  checkEnv(`${field}.env`, c.env);
}

/** A container as a reader sees it: its variables' names, not their values. */
export function redactContainer<C extends ContainerWorkload>(c: C): C {
  return { ...c, env: redactEnv(c.env) };
}

/** Containers: cgroup limits and figures, events, and an address of their own on the bridge. */
export const DOCKER_CAPABILITIES: Capabilities = { ...WORKLOAD_CAPABILITIES, network: true };

export interface DockerDriverOptions {
  readonly socketPath: string;
  readonly hostId: string;
  /** Seconds Docker waits after SIGTERM before SIGKILL on stop. */
  readonly stopGraceMs: number;
  /** Pull an image that is not present locally. Default true. */
  readonly pullMissing?: boolean;
  readonly pullTimeoutMs?: number;
}

interface DockerApiError extends Error {
  statusCode?: number;
  json?: { message?: string };
}

/** Containers through the Docker Engine API (dockerode). */
export class DockerDriver extends BaseDriver<ContainerWorkload> implements Discovering {
  readonly name: DriverName = DriverNames.Docker;
  readonly capabilities: Capabilities = DOCKER_CAPABILITIES;
  readonly docker: Docker;
  private readonly listeners = new Set<RuntimeListener>();
  private events: NodeJS.ReadableStream | undefined;
  private eventsSince = Math.floor(Date.now() / 1000);
  private closed = false;
  /** Docker's record of each container's limits, following its cgroup. */
  readonly record: DockerRecord;

  constructor(
    private readonly cgroups: CgroupDriver,
    private readonly opts: DockerDriverOptions,
  ) {
    super();
    this.docker = new Docker({ socketPath: opts.socketPath });
    this.record = new DockerRecord(
      cgroups.fs,
      (id, body) => api('update', id, () => this.docker.getContainer(id).update(body)),
      (id, err, applied) => void this.refused(id, err, applied),
    );
  }

  /** Its workloads live in cgroups of this host. */
  override unsupportedLimits(): Readonly<Record<string, string>> {
    return this.cgroups.unsupportedLimits();
  }

  async health(): Promise<void> {
    try {
      await api('ping', undefined, () => this.docker.ping());
    } catch (err) {
      throw new UnavailableError(`docker is not reachable at ${this.opts.socketPath}: ${(err as Error).message}`, { cause: err });
    }
  }

  override async create(spec: WorkloadSpec<ContainerWorkload>): Promise<Runtime> {
    const c = spec.workload;
    const r = asked(spec.resources);
    const mac = macFor(spec.objectId);
    const options: Docker.ContainerCreateOptions = {
      name: `agent-${spec.name}-${spec.objectId.slice(-8)}`,
      Image: c.image,
      Cmd: c.command.length > 0 ? [...c.command] : undefined,
      Env: [...c.env],
      Labels: {
        ...spec.labels,
        [Label.Managed]: 'true',
        [Label.ObjectId]: spec.objectId,
        [Label.HostId]: this.opts.hostId,
        [Label.Name]: spec.name,
      },
      // Known before the container exists, so that the network policy can hold its traffic from the first packet.
      // Top-level for Engine API < 1.44, per endpoint after; a network mode other than the default bridge keeps Docker's.
      MacAddress: mac,
      NetworkingConfig: { EndpointsConfig: { bridge: { MacAddress: mac } } },
      HostConfig: {
        Init: true, // PID 1 forwards SIGTERM: stop takes ~90 ms, not the whole timeout
        ...dockerHostConfig(r),
      },
    };
    // What the host's kernel lacks is refused before anything is made.
    requireSupported(this.cgroups.fs.refFor(''), r, 'spec.resources');
    const make = (): Promise<Docker.Container> => api('create', undefined, () => this.docker.createContainer(options));
    let container: Docker.Container;
    try {
      container = await make();
    } catch (err) {
      if (isConflict(err)) {
        // Its name is taken by what an earlier, interrupted create of this object made: that goes first.
        await this.purge(spec);
      } else if (isNoSuchImage(err) && this.opts.pullMissing !== false) {
        await this.pull(c.image);
      } else {
        throw this.fail('create', err);
      }
      container = await make().catch((e: unknown) => {
        throw this.fail('create', e);
      });
    }
    try {
      await api('start', container.id, () => container.start());
      const rt = await this.inspect({ runtimeId: container.id, pid: 0, cgroup: { version: this.cgroups.fs.version, paths: {} }, applied: spec.resources, running: false });
      // What Docker cannot set exactly goes to the container's cgroup itself, right after its start.
      const rest = notForDocker(r);
      if (!rt.running || Object.keys(rest).length === 0) return rt;
      this.cgroups.fs.applyLimits(rt.cgroup, rest, 'spec.resources');
      return { ...rt, applied: this.cgroups.fs.readLimits(rt.cgroup) };
    } catch (err) {
      await api('remove', container.id, () => container.remove({ force: true })).catch(() => undefined); // leave nothing half-made
      throw this.fail('start', err);
    }
  }

  /**
   * The cgroup is the change: written here, and the call answers once the
   * kernel holds it. Docker's own record (docker update, what inspect shows
   * and a restart re-applies) follows off the answer path (DockerRecord):
   * coalesced per container, retried while Docker does not answer, flushed
   * when the driver closes and caught up when a container is adopted. If
   * Docker refuses it, the cgroup goes back and the object hears why. A
   * change waits only while Docker is writing an earlier one (Docker's write
   * of the older value would otherwise land after it).
   */
  override async update(rt: Runtime, change: ResourceChange): Promise<Runtime> {
    // What the kernel lacks is refused by applyLimits before anything changes; what Docker
    // can never take (removing a limit it holds) by dockerHostConfig, before that.
    // Docker wants MemorySwap with Memory: what follows from the change (the swap total moving with memory) goes too.
    await this.record.idle(rt.runtimeId);
    const before = this.cgroups.fs.readAfter(rt.cgroup, rt.applied, change);
    const full = withFollowers(change, before);
    const body = dockerHostConfig(full);
    this.cgroups.fs.applyLimits(rt.cgroup, full);
    const revert: ResourceChange = Object.fromEntries(Object.keys(full).map((k) => [k, before[k as keyof typeof before]]));
    this.record.follow(rt.runtimeId, rt.cgroup, full, revert, body);
    return { ...rt, applied: this.cgroups.fs.readAfter(rt.cgroup, before, full) };
  }

  /** Docker refused a change of its record: the cgroup went back; the object is told by its labels. */
  private async refused(id: string, err: unknown, applied: Resources): Promise<void> {
    const info = await api('inspect', id, () => this.docker.getContainer(id).inspect()).catch(() => undefined);
    const labels = info?.Config?.Labels ?? {};
    const objectId = labels[Label.ObjectId];
    if (!objectId || labels[Label.HostId] !== this.opts.hostId) return;
    const refused = `docker refused the limit change: ${dockerMessage(err)}`;
    for (const l of this.listeners) l({ objectId, runtimeId: id, running: info?.State?.Running === true, reason: refused, pid: info?.State?.Pid ?? 0, limits: { refused, applied } });
  }

  /**
   * Docker's record behind the cgroup (the agent was killed before it was
   * sent): the limits the cgroup holds, where Docker holds another value, go
   * to Docker now. The cgroup, not the agent's record of the object: a kill
   * between the cgroup write and that record (written a few ms after the
   * answer) leaves the record at the old value too, and the event, run again,
   * then finds nothing to change.
   */
  private catchUp(info: Docker.ContainerInspectInfo, cgroup: CgroupRef, inCgroup: Resources): void {
    const held = info.HostConfig as unknown as Record<string, unknown>;
    const want = dockerRecordOf(inCgroup);
    // MemorySwap goes with Memory; how Docker shows it depends on swap accounting, so it alone says nothing.
    if (Object.entries(want).some(([k, v]) => k !== 'MemorySwap' && held[k] !== v)) this.record.follow(info.Id, cgroup, {}, {}, want);
  }

  override async remove(rt: Runtime): Promise<void> {
    this.record.forget(rt.runtimeId);
    const container = this.docker.getContainer(rt.runtimeId);
    try {
      await api('stop', rt.runtimeId, () => container.stop({ t: Math.ceil(this.opts.stopGraceMs / 1000) })).catch((err: DockerApiError) => {
        if (err.statusCode !== 304) throw err; // 304: already stopped
      });
      await api('remove', rt.runtimeId, () => container.remove({ force: true, v: true }));
    } catch (err) {
      if ((err as DockerApiError).statusCode === 404) return; // already gone
      throw this.fail('remove', err);
    }
  }

  override async inspect(rt: Runtime, tries = 40, catchUp = false): Promise<Runtime> {
    let info: Docker.ContainerInspectInfo;
    try {
      info = await api('inspect', rt.runtimeId, () => this.docker.getContainer(rt.runtimeId).inspect());
    } catch (err) {
      throw this.fail('inspect', err);
    }
    const pid = info.State.Pid ?? 0;
    const running = info.State.Running === true && pid > 0;
    if (!running) return { runtimeId: info.Id, pid: 0, cgroup: rt.cgroup, applied: rt.applied, running, exitCode: info.State.ExitCode };
    try {
      const cgroup = this.cgroups.fs.refForPid(pid);
      const applied = this.cgroups.fs.readLimits(cgroup);
      if (catchUp) this.catchUp(info, cgroup, applied);
      return { runtimeId: info.Id, pid, cgroup, applied, running, ...addressOf(info) };
    } catch (err) {
      // It exited between Docker's answer and the read of its cgroup: ask again (Docker takes a
      // moment to notice), for how it ended.
      if (tries <= 1) throw err;
      await new Promise((r) => setTimeout(r, 25));
      return this.inspect(rt, tries - 1, catchUp);
    }
  }

  /**
   * Found again by its id, or (a create the restart interrupted) by its
   * object-id label, and then only if it was started: one that was created
   * and never started is half-made, for the caller to purge.
   */
  override async adopt(spec: WorkloadSpec<ContainerWorkload>, rt: Runtime | undefined): Promise<Runtime> {
    let id = rt?.runtimeId;
    if (!id) {
      const found = await this.marked(spec.objectId);
      const made = found.find((c) => c.State !== 'created');
      if (!made && found.length > 0) throw new NotFoundError(`container ${found[0]?.Id.slice(0, 12)} of ${spec.objectId} was created but never started`);
      id = made?.Id;
    }
    if (!id) throw new NotFoundError(`container of ${spec.objectId} is gone`);
    try {
      return await this.inspect({ runtimeId: id, pid: 0, cgroup: rt?.cgroup ?? { version: this.cgroups.fs.version, paths: {} }, applied: rt?.applied ?? spec.resources, running: false }, 40, true);
    } catch (err) {
      if (((err as DriverError).cause as DockerApiError | undefined)?.statusCode === 404) throw new NotFoundError(`container ${id.slice(0, 12)} of ${spec.objectId} is gone`);
      throw err;
    }
  }

  /** Every container that carries the object's marks is removed. */
  override async purge(spec: WorkloadSpec<ContainerWorkload>): Promise<void> {
    let found: Docker.ContainerInfo[];
    try {
      found = await this.marked(spec.objectId);
    } catch (err) {
      throw this.fail('list', err);
    }
    for (const c of found) await this.remove({ runtimeId: c.Id, pid: 0, cgroup: { version: this.cgroups.fs.version, paths: {} }, applied: spec.resources, running: false });
  }

  /** The containers this host's agent made for the object, found by their labels. */
  private marked(objectId: string): Promise<Docker.ContainerInfo[]> {
    return api('list', undefined, () => this.docker.listContainers({ all: true, filters: { label: [`${Label.ObjectId}=${objectId}`, `${Label.HostId}=${this.opts.hostId}`] } }));
  }

  override sampler(rt: Runtime): Sampler {
    return this.cgroups.sampler(rt);
  }

  /** die/start of the containers this host's agent manages, from the Docker event stream. */
  override watch(listener: RuntimeListener): () => void {
    this.listeners.add(listener);
    void this.ensureEvents();
    return () => this.listeners.delete(listener);
  }

  /**
   * Containers the agent did not create: subscribes to Docker events first,
   * then lists what exists, so that nothing falls into the gap; events from
   * before a reconnect are replayed from the last one seen (since). Managed
   * containers (any agent's) are never reported. Resolves once the existing
   * containers were reported.
   */
  async discover(filter: ContainerFilter, listener: DiscoveryListener): Promise<() => void> {
    const entry = { filter, listener };
    this.discoverers.add(entry);
    await this.ensureEvents();
    const all = await api('list', undefined, () => this.docker.listContainers({ all: true }));
    for (const c of all) {
      const labels = c.Labels ?? {};
      if (labels[Label.Managed] === 'true' || !filter(labels)) continue;
      await this.emitDiscovered(entry, c.Id, 'found').catch(() => undefined);
    }
    return () => this.discoverers.delete(entry);
  }

  private readonly discoverers = new Set<{ filter: ContainerFilter; listener: DiscoveryListener }>();
  private connected: Promise<void> | undefined;

  /** Starts the one event stream if it is not running; resolves once it is connected. */
  private ensureEvents(): Promise<void> {
    if (!this.events && !this.connected) {
      this.connected = new Promise((resolve) => void this.follow(250, resolve));
    }
    return this.connected ?? Promise.resolve();
  }

  private async follow(backoffMs: number, onConnected?: () => void): Promise<void> {
    if (this.closed) return onConnected?.();
    try {
      const stream = (await this.docker.getEvents({
        since: this.eventsSince, // replays what happened while disconnected
        filters: { type: ['container'], event: ['start', 'die', 'destroy'] },
      })) as NodeJS.ReadableStream;
      this.events = stream;
      onConnected?.();
      onConnected = undefined;
      backoffMs = 250;
      let buf = '';
      stream.on('data', (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line !== '') this.onEvent(line);
        }
      });
      await new Promise<void>((resolve) => {
        stream.once('end', resolve);
        stream.once('error', () => resolve());
        stream.once('close', resolve);
      });
    } catch {
      /* engine down: retry below, with backoff */
    }
    this.events = undefined;
    if (this.closed) return onConnected?.();
    // The first connection may wait for an engine that is down; do not hold startup for it.
    onConnected?.();
    onConnected = undefined;
    this.connected = undefined;
    await new Promise((r) => setTimeout(r, backoffMs));
    if (!this.events && !this.connected) this.connected = new Promise((resolve) => void this.follow(Math.min(backoffMs * 2, 10_000), resolve));
  }

  private onEvent(line: string): void {
    let ev: { status?: string; Action?: string; id?: string; time?: number; Actor?: { Attributes?: Record<string, string> } };
    try {
      ev = JSON.parse(line) as typeof ev;
    } catch {
      return;
    }
    const action = ev.Action ?? ev.status;
    const attrs = ev.Actor?.Attributes ?? {};
    if (ev.time) this.eventsSince = ev.time;
    if (!ev.id) return;
    if (attrs[Label.Managed] === 'true') {
      const objectId = attrs[Label.ObjectId];
      if (!objectId || attrs[Label.HostId] !== this.opts.hostId || action === 'destroy') return;
      const running = action === 'start';
      const reason = running ? 'started' : `exited with code ${attrs.exitCode ?? '?'}`;
      const exitCode = !running && attrs.exitCode !== undefined ? Number(attrs.exitCode) : undefined;
      for (const l of this.listeners) l({ objectId, runtimeId: ev.id, running, reason, pid: 0, exitCode });
      return;
    }
    for (const d of this.discoverers) {
      if (!d.filter(attrs)) continue;
      if (action === 'start') void this.emitDiscovered(d, ev.id, 'started').catch(() => undefined);
      else if (action === 'die') d.listener({ kind: 'stopped', id: ev.id, reason: `exited with code ${attrs.exitCode ?? '?'}` });
      else if (action === 'destroy') d.listener({ kind: 'removed', id: ev.id, reason: 'removed' });
    }
  }

  private async emitDiscovered(d: { listener: DiscoveryListener }, id: string, kind: 'found' | 'started'): Promise<void> {
    const info = await api('inspect', id, () => this.docker.getContainer(id).inspect());
    const running = info.State.Running === true && (info.State.Pid ?? 0) > 0;
    const runtime: Runtime = {
      runtimeId: info.Id,
      pid: running ? info.State.Pid : 0,
      cgroup: running ? this.cgroups.fs.refForPid(info.State.Pid) : { version: this.cgroups.fs.version, paths: {} },
      applied: limits({ cpus: (info.HostConfig.NanoCpus ?? 0) / 1e9, memoryBytes: info.HostConfig.Memory ?? 0, pidsLimit: Math.max(0, info.HostConfig.PidsLimit ?? 0) }),
      running,
      ...(running ? addressOf(info) : {}),
    };
    if (running) (runtime as { applied: Runtime['applied'] }).applied = this.cgroups.fs.readLimits(runtime.cgroup);
    d.listener({
      kind,
      id: info.Id,
      reason: kind,
      container: {
        name: info.Name.replace(/^\//, ''),
        image: info.Config.Image,
        command: [...(info.Config.Cmd ?? [])],
        labels: { ...(info.Config.Labels ?? {}) },
      },
      runtime,
    });
  }

  override async close(): Promise<void> {
    await this.record.close(2_000);
    this.closed = true;
    const s = this.events as (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
    s?.destroy?.();
  }

  private async pull(image: string): Promise<void> {
    const timeoutMs = this.opts.pullTimeoutMs ?? 120_000;
    try {
      const stream = (await api('pull', undefined, () => this.docker.pull(image))) as NodeJS.ReadableStream;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`pull timed out after ${timeoutMs} ms`)), timeoutMs);
        this.docker.modem.followProgress(stream, (err: Error | null) => {
          clearTimeout(timer);
          if (err) reject(err);
          else resolve();
        });
      });
    } catch (err) {
      throw new DriverError(this.name, `no such image ${image} locally, and pulling it failed: ${dockerMessage(err)}`, { cause: err });
    }
  }

  private fail(op: string, err: unknown): Error {
    if (err instanceof AgentError && !(err instanceof DriverError)) return err; // already says what and which field
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES') {
      return new DriverError(this.name, `docker is not reachable at ${this.opts.socketPath}: ${dockerMessage(err)}`, { cause: err });
    }
    return new DriverError(this.name, `${op}: ${dockerMessage(err)}`, { cause: err });
  }
}

/** One span per Docker API call, with the container id when there is one. */
function api<T>(op: string, containerId: string | undefined, fn: () => Promise<T>): Promise<T> {
  return traced(`docker ${op}`, containerId ? { 'container.id': containerId } : {}, () => fn());
}

function isConflict(err: unknown): boolean {
  return (err as DockerApiError).statusCode === 409;
}

function isNoSuchImage(err: unknown): boolean {
  const e = err as DockerApiError;
  return e.statusCode === 404 && /no such image/i.test(dockerMessage(err));
}

function dockerMessage(err: unknown): string {
  const e = err as DockerApiError;
  return (e.json?.message ?? e.message ?? String(err)).trim();
}

/** A running container's IPv4 address and MAC on its (first) network. */
function addressOf(info: Docker.ContainerInspectInfo): { ip?: string; mac?: string } {
  // The default bridge's endpoint also shows at the top level (deprecated there); the per-network one is what stays.
  const net = Object.values(info.NetworkSettings?.Networks ?? {}).find((n) => n?.IPAddress);
  const ip = net?.IPAddress || undefined;
  const mac = net?.MacAddress || undefined;
  return { ...(ip ? { ip } : {}), ...(mac ? { mac } : {}) };
}
