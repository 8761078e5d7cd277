import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from '@agent/grpc-kit';
import { Driver as DriverNames, KubeLabel, type DriverName } from '@agent/option';
import type { CgroupFs } from '../cgroup-fs';
import { allLimits, BaseDriver, NO_FIGURES, type Capabilities, type Sampler } from '../driver';
import type { ResourceChange, Runtime, RuntimeListener, WorkloadSpec } from '../types';
import { Cluster, statusOf, type Place } from './cluster';
import { appliedLimits, desired, hostSelector, labelValue } from './manifest';
import { PodSampler } from './pod-figures';
import { standingOf, type Standing } from './status';
import { parseManifest, type K8sWorkload, type KubeObject, type WorkloadType } from './workload';

/**
 * Kubernetes workloads: limits are the containers' cpu and memory limits;
 * figures from the pods on this node; events from informers. Not in a cgroup
 * the agent makes, and no address the agent segments.
 */
export const K8S_CAPABILITIES: Capabilities = {
  lifecycle: true,
  limits: { ...allLimits(false), cpus: true, memoryBytes: true },
  stats: true,
  cgroup: false,
  network: false,
  report: false,
  events: true,
};

export interface K8sDriverOptions {
  readonly hostId: string;
  /** The kubeconfig a spec without one uses. */
  readonly kubeconfig: string;
  /** This host's node name: its pods' cgroups are read for figures. */
  readonly nodeName: string;
  /** How long a create with wait_ready waits before answering PENDING. */
  readonly readyTimeoutMs: number;
  /** How long a delete waits for the workload (and, foreground, its pods) to be gone. */
  readonly goneTimeoutMs: number;
}

const SEP = '/';

/** Kubernetes workloads through their cluster's API server (@kubernetes/client-node). */
export class K8sDriver extends BaseDriver<K8sWorkload> {
  readonly name: DriverName = DriverNames.K8s;
  readonly capabilities: Capabilities = K8S_CAPABILITIES;
  private readonly clusters = new Map<string, Cluster>();
  /** runtime id -> the cluster it is in (known from its create or adopt). */
  private readonly placed = new Map<string, Cluster>();
  private readonly listeners = new Set<RuntimeListener>();
  /** object id -> the standing last told, so that listeners hear changes only. */
  private readonly told = new Map<string, string>();
  private readonly waiters = new Set<() => void>();
  /**
   * Objects whose create or update is under way: what the cluster says of
   * them meanwhile is the call's to answer, and would reach the agent after
   * that answer, stale.
   */
  private readonly busy = new Set<string>();

  constructor(
    private readonly cgroups: CgroupFs,
    private readonly opts: K8sDriverOptions,
  ) {
    super();
  }

  /** Each object names its cluster: the driver itself is always up; a cluster that does not answer fails its objects' calls. */
  health(): Promise<void> {
    return Promise.resolve();
  }

  override async create(spec: WorkloadSpec<K8sWorkload>): Promise<Runtime> {
    const cluster = this.clusterOf(spec.workload);
    const place = this.placeOf(spec.workload, cluster);
    const existing = await cluster.read(place);
    if (existing && existing.metadata.labels?.[KubeLabel.ObjectId] !== labelValue(spec.objectId)) {
      throw new AlreadyExistsError(`spec.k8s.manifest: ${place.kind} ${place.namespace}/${place.name} exists in the cluster and is not this object's`);
    }
    await cluster.watch(place.namespace, place.kind);
    return this.answering(spec.objectId, async () => {
      const applied = await cluster.apply(desired(spec, this.opts.hostId, place.namespace));
      const rt = this.remember(cluster, place, applied);
      return spec.workload.waitReady ? this.waitReady(cluster, place, applied) : rt;
    });
  }

  /**
   * Applies the object's spec after the update (replicas, images, limits).
   * What Kubernetes will not change in place (a Job's or Pod's template) is
   * deleted and made again. With wait_ready it answers once rolled out.
   */
  override async update(_rt: Runtime, _change: ResourceChange, spec?: WorkloadSpec<K8sWorkload>): Promise<Runtime> {
    if (!spec) throw new FailedPreconditionError('k8s: an update needs the object\'s spec');
    const cluster = this.clusterOf(spec.workload);
    const place = this.placeOf(spec.workload, cluster);
    await cluster.watch(place.namespace, place.kind);
    const obj = desired(spec, this.opts.hostId, place.namespace);
    return this.answering(spec.objectId, async () => {
      let applied: KubeObject;
      try {
        applied = await cluster.apply(obj);
      } catch (err) {
        if (!immutable(err)) throw err;
        await cluster.delete(place);
        await this.waitGone(cluster, place);
        applied = await cluster.apply(obj);
      }
      const now = this.remember(cluster, place, applied);
      return spec.workload.waitReady ? this.waitReady(cluster, place, applied) : now;
    });
  }

  /** A call that answers where the object stands: listeners hear of it from then on, and only of changes from that answer. */
  private async answering(objectId: string, call: () => Promise<Runtime>): Promise<Runtime> {
    objectId = labelValue(objectId);
    this.busy.add(objectId);
    try {
      const rt = await call();
      this.told.set(objectId, standingKey({ phase: rt.phase ?? 'pending', reason: rt.reason ?? '', exitCode: rt.exitCode }));
      return rt;
    } finally {
      this.busy.delete(objectId);
    }
  }

  override async remove(rt: Runtime): Promise<void> {
    const cluster = this.placed.get(rt.runtimeId);
    if (!cluster) return; // not known here: purge finds it by its labels
    const place = placeOfRuntime(rt.runtimeId);
    await cluster.delete(place);
    await this.waitGone(cluster, place);
    this.placed.delete(rt.runtimeId);
  }

  /** Whatever in the cluster carries the object's label: what an interrupted create left. */
  override async purge(spec: WorkloadSpec<K8sWorkload>): Promise<void> {
    const cluster = this.clusterOf(spec.workload);
    const place = this.placeOf(spec.workload, cluster);
    for (const o of await cluster.list(place.namespace, place.kind, `${KubeLabel.ObjectId}=${labelValue(spec.objectId)}`)) {
      const p = { ...place, name: o.metadata.name };
      await cluster.delete(p);
      await this.waitGone(cluster, p);
    }
    this.told.delete(spec.objectId);
  }

  override async inspect(rt: Runtime): Promise<Runtime> {
    const cluster = this.placed.get(rt.runtimeId);
    if (!cluster) throw new NotFoundError(`k8s workload ${rt.runtimeId} is not known to this agent`);
    const place = placeOfRuntime(rt.runtimeId);
    const o = await cluster.read(place);
    if (!o) throw new NotFoundError(`${place.kind} ${place.namespace}/${place.name} is gone from the cluster`);
    return this.runtimeOf(cluster, place, o);
  }

  /** Found again by its name, and only if it carries the object's label. */
  override async adopt(spec: WorkloadSpec<K8sWorkload>, _rt: Runtime | undefined): Promise<Runtime> {
    const cluster = this.clusterOf(spec.workload);
    const place = this.placeOf(spec.workload, cluster);
    const o = await cluster.read(place);
    if (!o || o.metadata.labels?.[KubeLabel.ObjectId] !== labelValue(spec.objectId)) throw new NotFoundError(`${place.kind} ${place.namespace}/${place.name} is gone from the cluster`);
    await cluster.watch(place.namespace, place.kind);
    return this.remember(cluster, place, cluster.cached(place) ?? o);
  }

  override sampler(rt: Runtime): Sampler {
    const cluster = this.placed.get(rt.runtimeId);
    if (!cluster) return NO_FIGURES;
    const place = placeOfRuntime(rt.runtimeId);
    const objectId = () => cluster.cached(place)?.metadata.labels?.[KubeLabel.ObjectId];
    return new PodSampler(this.cgroups, () => {
      const id = objectId();
      return id ? cluster.podsWith(place.namespace, KubeLabel.ObjectId, id) : [];
    }, this.opts.nodeName);
  }

  override watch(listener: RuntimeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  override async close(): Promise<void> {
    await Promise.all([...this.clusters.values()].map((c) => c.close()));
    this.clusters.clear();
    this.placed.clear();
  }

  private clusterOf(w: K8sWorkload): Cluster {
    const file = w.kubeconfig || this.opts.kubeconfig;
    const id = `${file}#${w.context}`;
    let cluster = this.clusters.get(id);
    if (!cluster) {
      const made = Cluster.load(file, w.context, hostSelector(this.opts.hostId), (o, gone) => this.heard(made, o, gone));
      this.clusters.set(id, (cluster = made));
    }
    return cluster;
  }

  private placeOf(w: K8sWorkload, cluster: Cluster): Place {
    const obj = parseManifest(w.manifest, 'spec.k8s.manifest');
    return { namespace: w.namespace || obj.metadata.namespace || cluster.defaultNamespace, kind: obj.kind as WorkloadType, name: obj.metadata.name };
  }

  private remember(cluster: Cluster, place: Place, o: KubeObject): Runtime {
    const rt = this.runtimeOf(cluster, place, o);
    this.placed.set(rt.runtimeId, cluster);
    return rt;
  }

  private standing(cluster: Cluster, place: Place, o: KubeObject): Standing {
    const id = o.metadata.labels?.[KubeLabel.ObjectId];
    return standingOf(o, id ? cluster.podsWith(place.namespace, KubeLabel.ObjectId, id) : []);
  }

  private runtimeOf(cluster: Cluster, place: Place, o: KubeObject): Runtime {
    const s = this.standing(cluster, place, o);
    return {
      runtimeId: runtimeIdOf(cluster, place),
      pid: 0,
      cgroup: { version: this.cgroups.version, paths: {} },
      applied: appliedLimits(o),
      running: s.phase === 'running',
      phase: s.phase,
      reason: s.reason || undefined,
      exitCode: s.exitCode,
    };
  }

  /** A watched workload or pod changed: its object's listeners hear where it stands now, if that changed. */
  private heard(cluster: Cluster, o: KubeObject, gone: boolean): void {
    for (const w of this.waiters) w();
    const objectId = o.metadata.labels?.[KubeLabel.ObjectId];
    if (!objectId || this.busy.has(objectId)) return;
    // A Pod workload is its own owner: its delete must be heard too (its cache entry is gone by then).
    const ownPod = o.kind === 'Pod' && this.placed.has(runtimeIdOf(cluster, { namespace: o.metadata.namespace ?? '', kind: 'Pod', name: o.metadata.name }));
    const owner = o.kind === 'Pod' && !ownPod ? this.ownerOf(cluster, o, objectId) : { o, gone };
    if (!owner) return;
    const place: Place = { namespace: owner.o.metadata.namespace ?? '', kind: owner.o.kind as WorkloadType, name: owner.o.metadata.name };
    const runtimeId = runtimeIdOf(cluster, place);
    if (!this.placed.has(runtimeId)) return; // not (or no longer) an object of this agent's
    const s: Standing = owner.gone ? { phase: 'stopped', reason: 'deleted from the cluster' } : this.standing(cluster, place, owner.o);
    const key = standingKey(s);
    if (this.told.get(objectId) === key) return;
    this.told.set(objectId, key);
    for (const l of this.listeners) l({ objectId, runtimeId, running: s.phase === 'running', reason: s.reason, pid: 0, exitCode: s.exitCode, phase: s.phase });
  }

  /** The watched workload a pod belongs to (by the object label), unless the pod is its own workload. */
  private ownerOf(cluster: Cluster, pod: KubeObject, objectId: string): { o: KubeObject; gone: boolean } | undefined {
    for (const rid of this.placed.keys()) {
      if (this.placed.get(rid) !== cluster) continue;
      const place = placeOfRuntime(rid);
      if (place.namespace !== pod.metadata.namespace) continue;
      const o = cluster.cached(place);
      if (o && o.metadata.labels?.[KubeLabel.ObjectId] === objectId) return { o, gone: false };
    }
    return undefined;
  }

  /**
   * Until the workload is ready (or ended, or failed), or the timeout: the
   * runtime as it then stands. The informer's copy counts once it has caught
   * up with what was applied: the same object (a re-created one has a new
   * uid) at its generation.
   */
  private async waitReady(cluster: Cluster, place: Place, applied: KubeObject): Promise<Runtime> {
    const generation = (o: KubeObject): number => (o.metadata as { generation?: number }).generation ?? 0;
    const now = (): Runtime => {
      const o = cluster.cached(place);
      const caughtUp = o && o.metadata.uid === applied.metadata.uid && generation(o) >= generation(applied);
      return this.runtimeOf(cluster, place, caughtUp ? o : applied);
    };
    await this.until(() => now().phase !== 'pending', this.opts.readyTimeoutMs);
    return now();
  }

  /** Until the API server has no such object (foreground: its pods went first). */
  private async waitGone(cluster: Cluster, place: Place): Promise<void> {
    const deadline = Date.now() + this.opts.goneTimeoutMs;
    while (Date.now() < deadline) {
      if (!(await cluster.read(place))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new FailedPreconditionError(`${place.kind} ${place.namespace}/${place.name} is still in the cluster ${this.opts.goneTimeoutMs} ms after its delete (a finalizer may hold it)`);
  }

  /** Resolves when ready() holds (checked whenever the cluster tells something) or after ms. */
  private until(ready: () => boolean, ms: number): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (!ready()) return;
        done();
      };
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(check);
    });
  }
}

const standingKey = (s: Standing): string => `${s.phase}/${s.reason}/${s.exitCode ?? ''}`;

/** A workload's runtime id: "context/namespace/Kind/name". */
function runtimeIdOf(cluster: Cluster, place: Place): string {
  return [cluster.context, place.namespace, place.kind, place.name].join(SEP);
}

/** "context/namespace/Kind/name" back to its place (a context name may hold "/"). */
function placeOfRuntime(runtimeId: string): Place {
  const parts = runtimeId.split(SEP);
  const name = parts.pop() ?? '';
  const kind = (parts.pop() ?? 'Pod') as WorkloadType;
  const namespace = parts.pop() ?? '';
  return { namespace, kind, name };
}

/** The cluster refused to change a field it keeps fixed (a Job's template, most of a Pod). */
function immutable(err: unknown): boolean {
  return statusOf((err as Error).cause ?? err) === 422 && /immutable|Forbidden: pod updates may not change/.test((err as Error).message ?? '');
}
