import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from '@agent/grpc-kit';
import { Driver as DriverNames, KubeLabel, type DriverName } from '@agent/option';
import type { CgroupFs } from '../cgroup-fs';
import { allLimits, NO_FIGURES, type Capabilities, type Sampler } from '../driver';
import type { ResourceChange, Runtime, WorkloadSpec } from '../types';
import { refOf, type Cluster, type Place } from './cluster';
import { caughtUp, KubeBase, type KubeBaseOptions } from './kube-base';
import { appliedLimits, desired, labelValue } from './manifest';
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

export type K8sDriverOptions = KubeBaseOptions;

const SEP = '/';

/** Kubernetes workloads through their cluster's API server (@kubernetes/client-node). */
export class K8sDriver extends KubeBase<K8sWorkload> {
  readonly name: DriverName = DriverNames.K8s;
  readonly capabilities: Capabilities = K8S_CAPABILITIES;
  /** runtime id -> the cluster it is in (known from its create or adopt). */
  private readonly placed = new Map<string, Cluster>();

  constructor(cgroups: CgroupFs, opts: K8sDriverOptions) {
    super(cgroups, opts, { spec: 'spec.k8s', source: 'spec.k8s.manifest' });
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
      const applied = await cluster.apply(desired(spec, this.base.hostId, place.namespace));
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
    const obj = desired(spec, this.base.hostId, place.namespace);
    return this.answering(spec.objectId, async () => {
      const applied = await this.applyReplacing(cluster, obj);
      const now = this.remember(cluster, place, applied);
      return spec.workload.waitReady ? this.waitReady(cluster, place, applied) : now;
    });
  }

  override async remove(rt: Runtime): Promise<void> {
    const cluster = this.placed.get(rt.runtimeId);
    if (!cluster) return; // not known here: purge finds it by its labels
    const place = placeOfRuntime(rt.runtimeId);
    await cluster.delete(place);
    await this.waitGone(cluster, [refOf(place)]);
    this.placed.delete(rt.runtimeId);
  }

  /** Whatever in the cluster carries the object's label: what an interrupted create left. */
  override async purge(spec: WorkloadSpec<K8sWorkload>): Promise<void> {
    const cluster = this.clusterOf(spec.workload);
    const place = this.placeOf(spec.workload, cluster);
    for (const o of await cluster.list(place.namespace, place.kind, `${KubeLabel.ObjectId}=${labelValue(spec.objectId)}`)) {
      const p = { ...place, name: o.metadata.name };
      await cluster.delete(p);
      await this.waitGone(cluster, [refOf(p)]);
    }
    this.forget(spec.objectId);
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
    return this.podSampler(() => {
      const id = objectId();
      return id ? cluster.podsWith(place.namespace, KubeLabel.ObjectId, id) : [];
    });
  }

  override async close(): Promise<void> {
    await super.close();
    this.placed.clear();
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
    return this.runtime(runtimeIdOf(cluster, place), this.standing(cluster, place, o), appliedLimits(o));
  }

  /** A watched workload or pod changed: its object's listeners hear where it stands now, if that changed. */
  protected heard(cluster: Cluster, o: KubeObject, gone: boolean): void {
    const objectId = o.metadata.labels?.[KubeLabel.ObjectId];
    if (!objectId || this.isBusy(objectId)) return;
    // A Pod workload is its own owner: its delete must be heard too (its cache entry is gone by then).
    const ownPod = o.kind === 'Pod' && this.placed.has(runtimeIdOf(cluster, { namespace: o.metadata.namespace ?? '', kind: 'Pod', name: o.metadata.name }));
    const owner = o.kind === 'Pod' && !ownPod ? this.ownerOf(cluster, o, objectId) : { o, gone };
    if (!owner) return;
    const place: Place = { namespace: owner.o.metadata.namespace ?? '', kind: owner.o.kind as WorkloadType, name: owner.o.metadata.name };
    const runtimeId = runtimeIdOf(cluster, place);
    if (!this.placed.has(runtimeId)) return; // not (or no longer) an object of this agent's
    this.tell(objectId, runtimeId, owner.gone ? { phase: 'stopped', reason: 'deleted from the cluster' } : this.standing(cluster, place, owner.o));
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
    const now = (): Runtime => this.runtimeOf(cluster, place, caughtUp(cluster.cached(place), applied));
    await this.until(() => now().phase !== 'pending', this.base.readyTimeoutMs);
    return now();
  }
}

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
