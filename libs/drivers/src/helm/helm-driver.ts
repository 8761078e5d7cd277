import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from '@agent/grpc-kit';
import { Driver as DriverNames, KubeLabel, type DriverName } from '@agent/option';
import type { CgroupFs } from '../cgroup-fs';
import { limits } from '../dimensions';
import { allLimits, NO_FIGURES, type Capabilities, type Sampler } from '../driver';
import type { Cluster, Place, Ref } from '../k8s/cluster';
import { caughtUp, KubeBase, refOfObject, type KubeBaseOptions } from '../k8s/kube-base';
import { labelValue, marks } from '../k8s/manifest';
import { standingOf, type Standing } from '../k8s/status';
import { WORKLOAD_TYPES, type KubeObject, type WorkloadType } from '../k8s/workload';
import type { ResourceChange, Runtime, WorkloadSpec } from '../types';
import type { HelmWorkload } from './release';
import { render, type RenderOptions } from './render';

/**
 * Helm releases: no limits of the agent's (the chart's values say what its
 * containers get), figures from the release's pods on this node, events from
 * the informers of its workloads.
 */
export const HELM_CAPABILITIES: Capabilities = {
  lifecycle: true,
  limits: allLimits(false),
  stats: true,
  cgroup: false,
  network: false,
  report: false,
  events: true,
};

export interface HelmDriverOptions extends KubeBaseOptions {
  readonly render: RenderOptions;
}

/** The ConfigMap that lists what a release made: written before anything is applied, so nothing applied goes unlisted. */
export const inventoryName = (release: string): string => `agent-release.${release}`;
const INVENTORY_KEY = 'resources';

/**
 * Helm's install order (pkg/releaseutil/kind_sorter.go): what others use comes
 * first; kinds it does not know go last. Deletes go the other way.
 */
const INSTALL_ORDER = [
  'PriorityClass', 'Namespace', 'NetworkPolicy', 'ResourceQuota', 'LimitRange', 'PodSecurityPolicy', 'PodDisruptionBudget', 'ServiceAccount', 'Secret', 'SecretList',
  'ConfigMap', 'StorageClass', 'PersistentVolume', 'PersistentVolumeClaim', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleList', 'ClusterRoleBinding',
  'ClusterRoleBindingList', 'Role', 'RoleList', 'RoleBinding', 'RoleBindingList', 'Service', 'DaemonSet', 'Pod', 'ReplicationController', 'ReplicaSet', 'Deployment',
  'HorizontalPodAutoscaler', 'StatefulSet', 'Job', 'CronJob', 'IngressClass', 'Ingress', 'APIService',
];
const rank = (kind: string): number => {
  const i = INSTALL_ORDER.indexOf(kind);
  return i < 0 ? INSTALL_ORDER.length : i;
};

/** One release the agent made or took back. */
interface Release {
  readonly cluster: Cluster;
  readonly namespace: string;
  readonly name: string;
  /** Its object label value. */
  readonly label: string;
  readonly refs: readonly Ref[];
  /** Each workload as applied, or heard since; undefined once gone from the cluster. */
  readonly workloads: Map<string, KubeObject | undefined>;
}

const keyOf = (r: Ref): string => `${r.apiVersion}/${r.kind}/${r.namespace}/${r.name}`;
const isWorkload = (r: Ref): boolean => WORKLOAD_TYPES[r.kind as WorkloadType]?.apiVersion === r.apiVersion;
const placeOf = (r: Ref): Place => ({ namespace: r.namespace, kind: r.kind as WorkloadType, name: r.name });

/** Helm charts: rendered by helm, applied and watched as one object through the cluster's API server. */
export class HelmDriver extends KubeBase<HelmWorkload> {
  readonly name: DriverName = DriverNames.Helm;
  readonly capabilities: Capabilities = HELM_CAPABILITIES;
  /** runtime id -> the release. */
  private readonly releases = new Map<string, Release>();

  constructor(
    cgroups: CgroupFs,
    private readonly opts: HelmDriverOptions,
  ) {
    super(cgroups, opts, { spec: 'spec.helm', source: 'spec.helm.chart' });
  }

  override async create(spec: WorkloadSpec<HelmWorkload>): Promise<Runtime> {
    const { cluster, namespace } = this.where(spec.workload);
    const listed = await this.inventory(cluster, namespace, spec.workload.release);
    if (listed && listed.label !== labelValue(spec.objectId)) {
      throw new AlreadyExistsError(`spec.helm.release: release ${namespace}/${spec.workload.release} exists in the cluster and is not this object's`);
    }
    return this.install(spec, cluster, namespace, listed?.refs ?? []);
  }

  /** Renders the release again and applies it; what it no longer renders is deleted. */
  override async update(_rt: Runtime, _change: ResourceChange, spec?: WorkloadSpec<HelmWorkload>): Promise<Runtime> {
    if (!spec) throw new FailedPreconditionError('helm: an update needs the object\'s spec');
    const { cluster, namespace } = this.where(spec.workload);
    const listed = await this.inventory(cluster, namespace, spec.workload.release);
    return this.install(spec, cluster, namespace, listed?.label === labelValue(spec.objectId) ? listed.refs : []);
  }

  override async remove(rt: Runtime): Promise<void> {
    const r = this.releases.get(rt.runtimeId);
    if (!r) return; // not known here: purge finds it by its inventory
    await this.uninstall(r.cluster, r.namespace, r.name, r.refs);
    this.releases.delete(rt.runtimeId);
  }

  /** What the inventory lists, if it is this object's: what an interrupted create or update left. */
  override async purge(spec: WorkloadSpec<HelmWorkload>): Promise<void> {
    const { cluster, namespace } = this.where(spec.workload);
    const listed = await this.inventory(cluster, namespace, spec.workload.release);
    if (listed && listed.label === labelValue(spec.objectId)) await this.uninstall(cluster, namespace, spec.workload.release, listed.refs);
    this.forget(spec.objectId);
  }

  override async inspect(rt: Runtime): Promise<Runtime> {
    const r = this.releases.get(rt.runtimeId);
    if (!r) throw new NotFoundError(`helm release ${rt.runtimeId} is not known to this agent`);
    if (!(await this.inventory(r.cluster, r.namespace, r.name))) throw new NotFoundError(`release ${r.namespace}/${r.name} is gone from the cluster`);
    for (const ref of r.refs.filter(isWorkload)) r.workloads.set(keyOf(ref), await r.cluster.read(ref));
    return this.runtimeOf(r);
  }

  /** Taken back from its inventory, and only if that is this object's. */
  override async adopt(spec: WorkloadSpec<HelmWorkload>, _rt: Runtime | undefined): Promise<Runtime> {
    const { cluster, namespace } = this.where(spec.workload);
    const listed = await this.inventory(cluster, namespace, spec.workload.release);
    if (!listed || listed.label !== labelValue(spec.objectId)) throw new NotFoundError(`release ${namespace}/${spec.workload.release} is gone from the cluster`);
    await this.watchWorkloads(cluster, listed.refs);
    const workloads = new Map<string, KubeObject | undefined>();
    for (const ref of listed.refs.filter(isWorkload)) workloads.set(keyOf(ref), cluster.cached(placeOf(ref)) ?? (await cluster.read(ref)));
    return this.runtimeOf(this.remember({ cluster, namespace, name: spec.workload.release, label: listed.label, refs: listed.refs, workloads }));
  }

  override sampler(rt: Runtime): Sampler {
    const r = this.releases.get(rt.runtimeId);
    if (!r) return NO_FIGURES;
    const namespaces = [...new Set(r.refs.filter(isWorkload).map((x) => x.namespace))];
    return this.podSampler(() => namespaces.flatMap((ns) => r.cluster.podsWith(ns, KubeLabel.ObjectId, r.label)));
  }

  override async close(): Promise<void> {
    await super.close();
    this.releases.clear();
  }

  private where(w: HelmWorkload): { cluster: Cluster; namespace: string } {
    const cluster = this.clusterOf(w);
    return { cluster, namespace: w.namespace || cluster.defaultNamespace };
  }

  /**
   * Renders, lists (before: what the inventory had, plus what is new), applies
   * in helm's order, deletes what is no longer rendered, then lists only what
   * is. A resource in the way that is not this object's is ALREADY_EXISTS,
   * before anything is written.
   */
  private async install(spec: WorkloadSpec<HelmWorkload>, cluster: Cluster, namespace: string, before: readonly Ref[]): Promise<Runtime> {
    const w = spec.workload;
    const label = labelValue(spec.objectId);
    const objs = (await render(w, namespace, this.opts.render)).map((o) => this.marked(o, spec.objectId, namespace)).sort((a, b) => rank(a.kind) - rank(b.kind));
    const refs = objs.map(refOfObject);
    const known = new Set(before.map(keyOf));
    for (const ref of refs.filter((x) => !known.has(keyOf(x)))) {
      const there = await cluster.read(ref);
      if (there && there.metadata.labels?.[KubeLabel.ObjectId] !== label) {
        throw new AlreadyExistsError(`spec.helm.release: ${ref.kind} ${ref.namespace}/${ref.name} exists in the cluster and is not this object's`);
      }
    }
    await this.watchWorkloads(cluster, refs);
    return this.answering(spec.objectId, async () => {
      const keep = new Set(refs.map(keyOf));
      const stale = before.filter((x) => !keep.has(keyOf(x)));
      await this.list(cluster, spec, namespace, [...refs, ...stale]);
      const workloads = new Map<string, KubeObject | undefined>();
      for (const o of objs) {
        const applied = await this.applyReplacing(cluster, o);
        if (isWorkload(refOfObject(o))) workloads.set(keyOf(refOfObject(o)), applied);
      }
      await this.deleteAll(cluster, stale);
      await this.list(cluster, spec, namespace, refs);
      const r = this.remember({ cluster, namespace, name: w.release, label, refs, workloads });
      if (!w.waitReady) return this.runtimeOf(r);
      await this.until(() => this.standing(r).phase !== 'pending', this.opts.readyTimeoutMs);
      return this.runtimeOf(r);
    });
  }

  /** Deletes what the release made, last made first, then its inventory. */
  private async uninstall(cluster: Cluster, namespace: string, release: string, refs: readonly Ref[]): Promise<void> {
    await this.deleteAll(cluster, refs);
    const inventory: Ref = { apiVersion: 'v1', kind: 'ConfigMap', namespace, name: inventoryName(release) };
    await cluster.delete(inventory);
    await this.waitGone(cluster, [inventory]);
  }

  private async deleteAll(cluster: Cluster, refs: readonly Ref[]): Promise<void> {
    const order = [...refs].sort((a, b) => rank(b.kind) - rank(a.kind));
    for (const ref of order) await cluster.delete(ref);
    await this.waitGone(cluster, order);
  }

  /** A rendered resource as the agent applies it: in the release's namespace unless it names one, marked, and its pods too. */
  private marked(o: KubeObject, objectId: string, namespace: string): KubeObject {
    const mark = marks(objectId, this.opts.hostId);
    const out: KubeObject = { ...o, metadata: { ...o.metadata, namespace: o.metadata.namespace ?? namespace, labels: { ...(o.metadata.labels ?? {}), ...mark } } };
    const template = (out.spec as { template?: { metadata?: { labels?: Record<string, string> } } } | undefined)?.template;
    if (template && typeof template === 'object') template.metadata = { ...(template.metadata ?? {}), labels: { ...(template.metadata?.labels ?? {}), ...mark } };
    return out;
  }

  /** The release's inventory: what it made, and whose object it is; undefined when there is none. */
  private async inventory(cluster: Cluster, namespace: string, release: string): Promise<{ refs: Ref[]; label: string } | undefined> {
    const cm = await cluster.read({ apiVersion: 'v1', kind: 'ConfigMap', namespace, name: inventoryName(release) });
    if (!cm) return undefined;
    const label = cm.metadata.labels?.[KubeLabel.ObjectId] ?? '';
    try {
      const refs = JSON.parse(String((cm.data as Record<string, unknown> | undefined)?.[INVENTORY_KEY] ?? '[]')) as Ref[];
      return { refs: refs.filter((r) => typeof r?.kind === 'string' && typeof r.name === 'string'), label };
    } catch {
      return { refs: [], label };
    }
  }

  private async list(cluster: Cluster, spec: WorkloadSpec<HelmWorkload>, namespace: string, refs: readonly Ref[]): Promise<void> {
    await cluster.apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: inventoryName(spec.workload.release), namespace, labels: marks(spec.objectId, this.opts.hostId) },
      data: { [INVENTORY_KEY]: JSON.stringify(refs.map((r) => ({ apiVersion: r.apiVersion, kind: r.kind, namespace: r.namespace, name: r.name }))) },
    });
  }

  private async watchWorkloads(cluster: Cluster, refs: readonly Ref[]): Promise<void> {
    await Promise.all(refs.filter(isWorkload).map((r) => cluster.watch(r.namespace, r.kind as WorkloadType)));
  }

  private remember(r: Release): Release {
    this.releases.set(this.runtimeIdOf(r), r);
    return r;
  }

  private runtimeIdOf(r: { cluster: Cluster; namespace: string; name: string }): string {
    return `${r.cluster.context}/${r.namespace}/${r.name}`;
  }

  private runtimeOf(r: Release): Runtime {
    return this.runtime(this.runtimeIdOf(r), this.standing(r), limits({}));
  }

  /**
   * Where a release stands: its workloads' worst. FAILED if one failed or was
   * deleted behind the agent's back, PENDING while one gets ready, RUNNING
   * when one runs and the rest ended well, STOPPED when all ended (Jobs
   * complete). A release of no workloads runs once applied.
   */
  private standing(r: Release): Standing {
    const parts: Array<{ ref: Ref; s: Standing }> = [];
    // The release's pods, listed once per namespace (every workload of it in one reads the same list).
    const pods = new Map<string, KubeObject[]>();
    const podsIn = (ns: string): KubeObject[] => pods.get(ns) ?? pods.set(ns, r.cluster.podsWith(ns, KubeLabel.ObjectId, r.label)).get(ns)!;
    for (const ref of r.refs.filter(isWorkload)) {
      const seen = r.workloads.get(keyOf(ref));
      const o = seen && caughtUp(r.cluster.cached(placeOf(ref)), seen);
      const s: Standing = o ? standingOf(o, podsIn(ref.namespace)) : { phase: 'failed', reason: 'deleted from the cluster' };
      parts.push({ ref, s });
    }
    const first = (phase: Standing['phase']) => parts.find((p) => p.s.phase === phase);
    const named = (p: { ref: Ref; s: Standing }): Standing => ({ ...p.s, reason: `${p.ref.kind} ${p.ref.name}: ${p.s.reason}` });
    const bad = first('failed') ?? first('pending');
    if (bad) return named(bad);
    if (parts.length === 0 || first('running')) return { phase: 'running', reason: '' };
    return { phase: 'stopped', reason: 'every workload ended', exitCode: 0 };
  }

  /** A watched workload or pod changed: the release it belongs to (by its label) is told where it stands now. */
  protected heard(cluster: Cluster, o: KubeObject, gone: boolean): void {
    const label = o.metadata.labels?.[KubeLabel.ObjectId];
    if (!label || this.isBusy(label)) return;
    for (const [runtimeId, r] of this.releases) {
      if (r.cluster !== cluster || r.label !== label) continue;
      const key = keyOf(refOfObject(o));
      if (r.workloads.has(key)) r.workloads.set(key, gone ? undefined : o);
      this.tell(label, runtimeId, this.standing(r));
    }
  }
}
