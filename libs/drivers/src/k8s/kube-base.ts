import { FailedPreconditionError } from '@agent/grpc-kit';
import { BaseDriver } from '../driver';
import type { CgroupFs } from '../cgroup-fs';
import type { Sampler } from '../driver';
import type { Phase, Runtime, RuntimeListener } from '../types';
import { Cluster, statusOf, type Fields, type Ref } from './cluster';
import { hostSelector, labelValue } from './manifest';
import { PodSampler } from './pod-figures';
import type { Standing } from './status';
import type { KubeObject } from './workload';

// What the drivers of Kubernetes objects share (k8s: one workload; helm: a
// rendered release): one Cluster per kubeconfig and context, listeners told
// of changes only, calls that answer where an object stands without the
// cluster's news overtaking them, and waits on what the informers hear.

export interface KubeBaseOptions {
  readonly hostId: string;
  /** The kubeconfig a spec without one uses. */
  readonly kubeconfig: string;
  /** How long a delete waits for what it deleted (and, foreground, its pods) to be gone. */
  readonly goneTimeoutMs: number;
  /** This host's node name: its pods' cgroups are read for figures. */
  readonly nodeName: string;
  /** How long a create or update with wait_ready waits before answering PENDING. */
  readonly readyTimeoutMs: number;
}

/** Where an object's kubeconfig and context are in its spec. */
export interface KubeTarget {
  readonly kubeconfig: string;
  readonly context: string;
}

export abstract class KubeBase<W extends KubeTarget> extends BaseDriver<W> {
  private readonly clusters = new Map<string, Cluster>();
  private readonly listeners = new Set<RuntimeListener>();
  /** object label value -> the standing last told, so that listeners hear changes only. */
  private readonly told = new Map<string, string>();
  private readonly waiters = new Set<() => void>();
  /**
   * Objects whose create or update is under way: what the cluster says of
   * them meanwhile is the call's to answer, and would reach the agent after
   * that answer, stale.
   */
  private readonly busy = new Set<string>();

  constructor(
    /** This host's cgroups: where the pods bound to this node are read. */
    private readonly cgroups: CgroupFs,
    protected readonly base: KubeBaseOptions,
    private readonly fields: Fields,
  ) {
    super();
  }

  /** The figures of the pods pods() lists that run on this node. */
  protected podSampler(pods: () => readonly KubeObject[]): Sampler {
    return new PodSampler(this.cgroups, pods, this.base.nodeName);
  }

  /** A runtime as the cluster stands it: no pid or cgroup of its own on this host. */
  protected runtime(runtimeId: string, s: Standing, applied: Runtime['applied']): Runtime {
    const phase: Phase = s.phase;
    return { runtimeId, pid: 0, cgroup: { version: this.cgroups.version, paths: {} }, applied, running: phase === 'running', phase, reason: s.reason || undefined, exitCode: s.exitCode };
  }

  /** Each object names its cluster: the driver itself is always up; a cluster that does not answer fails its objects' calls. */
  health(): Promise<void> {
    return Promise.resolve();
  }

  override watch(listener: RuntimeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  override async close(): Promise<void> {
    await Promise.all([...this.clusters.values()].map((c) => c.close()));
    this.clusters.clear();
  }

  /** A watched workload or pod of the cluster changed, or went. */
  protected abstract heard(cluster: Cluster, o: KubeObject, gone: boolean): void;

  protected clusterOf(w: W): Cluster {
    const file = w.kubeconfig || this.base.kubeconfig;
    const id = `${file}#${w.context}`;
    let cluster = this.clusters.get(id);
    if (!cluster) {
      const made = Cluster.load(file, w.context, hostSelector(this.base.hostId), (o, gone) => this.hearing(made, o, gone), this.fields);
      this.clusters.set(id, (cluster = made));
    }
    return cluster;
  }

  private hearing(cluster: Cluster, o: KubeObject, gone: boolean): void {
    for (const w of this.waiters) w();
    this.heard(cluster, o, gone);
  }

  /** A call that answers where the object stands: listeners hear of it from then on, and only of changes from that answer. */
  protected async answering(objectId: string, call: () => Promise<Runtime>): Promise<Runtime> {
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

  /** Whether a call is answering for the object (its label value): the cluster's news of it wait for the answer. */
  protected isBusy(label: string): boolean {
    return this.busy.has(label);
  }

  protected forget(objectId: string): void {
    this.told.delete(labelValue(objectId));
  }

  /** Listeners hear where the object stands, if that changed since they last heard. */
  protected tell(label: string, runtimeId: string, s: Standing): void {
    const key = standingKey(s);
    if (this.told.get(label) === key) return;
    this.told.set(label, key);
    for (const l of this.listeners) l({ objectId: label, runtimeId, running: s.phase === 'running', reason: s.reason, pid: 0, exitCode: s.exitCode, phase: s.phase });
  }

  /**
   * Applies obj; what Kubernetes will not change in place (a Job's or Pod's
   * template) is deleted, waited for, and made again.
   */
  protected async applyReplacing(cluster: Cluster, obj: KubeObject): Promise<KubeObject> {
    try {
      return await cluster.apply(obj);
    } catch (err) {
      if (!immutable(err)) throw err;
      const ref = refOfObject(obj);
      await cluster.delete(ref);
      await this.waitGone(cluster, [ref]);
      return cluster.apply(obj);
    }
  }

  /** Until the API server has none of them (foreground: their pods went first). */
  protected async waitGone(cluster: Cluster, refs: readonly Ref[]): Promise<void> {
    const deadline = Date.now() + this.base.goneTimeoutMs;
    let left = [...refs];
    while (Date.now() < deadline) {
      const still = await Promise.all(left.map(async (r) => ((await cluster.read(r)) ? [r] : [])));
      left = still.flat();
      if (left.length === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = left[0]!;
    throw new FailedPreconditionError(`${r.kind} ${r.namespace}/${r.name} is still in the cluster ${this.base.goneTimeoutMs} ms after its delete (a finalizer may hold it)`);
  }

  /** Resolves when ready() holds (checked whenever the cluster tells something) or after ms. */
  protected until(ready: () => boolean, ms: number): Promise<void> {
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

/** The runtime of a Kubernetes object standing as s: no pid, no cgroup of the agent's. */

/**
 * The informer's copy of what was applied, once it has caught up: the same
 * object (a re-created one has a new uid) at its generation; until then what
 * the apply answered.
 */
export function caughtUp(cached: KubeObject | undefined, applied: KubeObject): KubeObject {
  const generation = (o: KubeObject): number => (o.metadata as { generation?: number }).generation ?? 0;
  return cached && cached.metadata.uid === applied.metadata.uid && generation(cached) >= generation(applied) ? cached : applied;
}

/** Where an object (as applied) is. */
export function refOfObject(o: KubeObject): Ref {
  return { apiVersion: o.apiVersion, kind: o.kind, namespace: o.metadata.namespace ?? '', name: o.metadata.name };
}

/** The cluster refused to change a field it keeps fixed (a Job's template, most of a Pod). */
function immutable(err: unknown): boolean {
  return statusOf((err as Error).cause ?? err) === 422 && /immutable|Forbidden: pod updates may not change/.test((err as Error).message ?? '');
}
