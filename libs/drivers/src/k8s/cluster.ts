import type * as k8s from '@kubernetes/client-node';
import { AgentError, AlreadyExistsError, DriverError, FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError } from '@agent/grpc-kit';
import { Driver as DriverNames } from '@agent/option';
import { WORKLOAD_TYPES, type KubeObject, type WorkloadType } from './workload';

// One cluster the driver talks to (a kubeconfig and a context): its API
// client and its informers. Informers list and watch the agent's own
// workloads and pods (by the host label), per namespace and type, and relist
// when the API server says their resourceVersion is gone (410).

/** The field manager of every apply: the fields the agent owns. */
export const FIELD_MANAGER = 'agent';

/**
 * The client library, loaded when the first cluster is: an agent that is
 * given no Kubernetes object never loads its ~900 modules (a third of an idle
 * agent's heap, which every major GC would otherwise mark).
 */
let loaded: typeof k8s | undefined;
const client = (): typeof k8s => (loaded ??= require('@kubernetes/client-node') as typeof k8s);

type Informer = k8s.Informer<k8s.KubernetesObject> & k8s.ObjectCache<k8s.KubernetesObject>;
type Watched = WorkloadType;

/** What the driver hears of a watched object: it changed, or went away. */
export type ClusterListener = (obj: KubeObject, gone: boolean) => void;

/** Where an object's workload is: the cluster's key and the object's place in it. */
export interface Place {
  readonly namespace: string;
  readonly kind: WorkloadType;
  readonly name: string;
}

/** Any resource the API serves (a chart renders Services, ConfigMaps...); namespace '' for one of the cluster. */
export interface Ref {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

/** A workload's place as a resource reference. */
export const refOf = (p: Place | Ref): Ref => ('apiVersion' in p ? p : { apiVersion: WORKLOAD_TYPES[p.kind].apiVersion, ...p });

/** The spec fields the cluster's answers are about: the kind's ("spec.k8s") and where its resources come from ("spec.k8s.manifest"). */
export interface Fields {
  readonly spec: string;
  readonly source: string;
}

export class Cluster {
  readonly api: k8s.KubernetesObjectApi;
  /** The namespace a workload goes to when neither spec nor manifest names one. */
  readonly defaultNamespace: string;
  private readonly informers = new Map<string, { informer: Informer; ready: Promise<void> }>();
  private closed = false;

  constructor(
    readonly key: string,
    private readonly kc: k8s.KubeConfig,
    private readonly selector: string,
    private readonly listener: ClusterListener,
    private readonly fields: Fields,
    private readonly restartMs = 1_000,
  ) {
    this.api = client().KubernetesObjectApi.makeApiClient(kc);
    this.defaultNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace || 'default';
  }

  /** The cluster of a kubeconfig file and context ('' = its current one). */
  static load(file: string, context: string, selector: string, listener: ClusterListener, fields: Fields): Cluster {
    const kc = new (client().KubeConfig)();
    try {
      kc.loadFromFile(file);
    } catch (err) {
      throw new FailedPreconditionError(`${fields.spec}.kubeconfig: cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
    if (context !== '') {
      if (!kc.getContextObject(context)) throw new FailedPreconditionError(`${fields.spec}.context: ${file} has no context ${JSON.stringify(context)}`);
      kc.setCurrentContext(context);
    }
    if (!kc.getCurrentCluster()) throw new FailedPreconditionError(`${fields.spec}.kubeconfig: ${file} has no cluster for context ${JSON.stringify(kc.getCurrentContext())}`);
    return new Cluster(`${file}#${kc.getCurrentContext()}`, kc, selector, listener, fields);
  }

  /** The context's name, for runtime ids. */
  get context(): string {
    return this.kc.getCurrentContext();
  }

  /**
   * Starts (once) the informers of the workload type and of pods in the
   * namespace; resolves once both have listed. A watch that fails is started
   * again; one that hears 410 relists by itself.
   */
  async watch(namespace: string, kind: Watched): Promise<void> {
    await Promise.all([this.informer(namespace, kind), this.informer(namespace, 'Pod')]);
  }

  private informer(namespace: string, kind: Watched): Promise<void> {
    const id = `${namespace}/${kind}`;
    const known = this.informers.get(id);
    if (known) return known.ready;
    const type = WORKLOAD_TYPES[kind];
    const base = type.apiVersion.includes('/') ? `/apis/${type.apiVersion}` : `/api/${type.apiVersion}`;
    const informer = client().makeInformer(this.kc, `${base}/namespaces/${namespace}/${type.plural}`, () => this.api.list(type.apiVersion, kind, namespace, undefined, undefined, undefined, undefined, this.selector), this.selector) as Informer;
    const tell = (gone: boolean) => (o: k8s.KubernetesObject): void => this.listener(withKind(o, kind), gone);
    informer.on('add', tell(false));
    informer.on('update', tell(false));
    informer.on('delete', tell(true));
    let listed: () => void = () => undefined;
    let failed: (err: unknown) => void = () => undefined;
    const ready = new Promise<void>((resolve, reject) => {
      listed = resolve;
      failed = reject;
    });
    informer.on('error', (err: unknown) => {
      failed(this.error(`watch ${type.plural}`, err));
      if (this.closed) return;
      // Only the informer still in use: one whose first list failed was dropped (the next object makes a new one).
      setTimeout(() => {
        if (!this.closed && this.informers.get(id) === entry) void informer.start();
      }, this.restartMs).unref();
    });
    const entry = { informer, ready: ready.catch((err: unknown) => {
      this.informers.delete(id); // the next object tries again
      void informer.stop();
      throw err;
    }) };
    this.informers.set(id, entry);
    void informer.start().then(() => listed());
    return entry.ready;
  }

  /** The watched object, as last heard; undefined when not watched or not there. */
  cached(place: Place): KubeObject | undefined {
    const o = this.informers.get(`${place.namespace}/${place.kind}`)?.informer.get(place.name, place.namespace);
    return o ? withKind(o, place.kind) : undefined;
  }

  /** The watched pods carrying a label value. */
  podsWith(namespace: string, label: string, value: string): KubeObject[] {
    const pods = this.informers.get(`${namespace}/Pod`)?.informer.list(namespace) ?? [];
    return pods.filter((p) => p.metadata?.labels?.[label] === value).map((p) => withKind(p, 'Pod'));
  }

  /** Server-side apply as the agent's field manager. */
  async apply(obj: KubeObject): Promise<KubeObject> {
    const what = `${obj.kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
    try {
      return typed((await this.api.patch(obj as k8s.KubernetesObject, undefined, undefined, FIELD_MANAGER, false, client().PatchStrategy.ServerSideApply)) as k8s.KubernetesObject, obj);
    } catch (err) {
      // An apply creates the object when missing: a 404 is its namespace's, or its type's (the client's discovery).
      if (statusOf(err) === 404) {
        const ns = obj.metadata.namespace;
        if (ns && !(await this.read({ apiVersion: 'v1', kind: 'Namespace', namespace: '', name: ns }))) throw new FailedPreconditionError(`${this.fields.spec}.namespace: the cluster has no namespace ${ns}`);
        throw new FailedPreconditionError(`${this.fields.source}: the cluster does not serve ${what}: ${(err as Error).message}`);
      }
      throw this.error(`apply ${what}`, err);
    }
  }

  /** The object now, from the API server; undefined when there is none. */
  async read(at: Place | Ref): Promise<KubeObject | undefined> {
    const ref = refOf(at);
    try {
      return typed((await this.api.read(specOf(ref))) as k8s.KubernetesObject, ref);
    } catch (err) {
      if (statusOf(err) === 404 || unserved(err)) return undefined;
      throw this.error(`read ${ref.kind} ${ref.namespace}/${ref.name}`, err);
    }
  }

  /** The objects of a type in the namespace carrying the selector. */
  async list(namespace: string, kind: WorkloadType, selector: string): Promise<KubeObject[]> {
    try {
      const l = await this.api.list(WORKLOAD_TYPES[kind].apiVersion, kind, namespace, undefined, undefined, undefined, undefined, selector);
      return l.items.map((o) => withKind(o, kind));
    } catch (err) {
      throw this.error(`list ${WORKLOAD_TYPES[kind].plural}`, err);
    }
  }

  /** Deletes with foreground propagation (its pods go first); one already gone is fine. */
  async delete(at: Place | Ref): Promise<void> {
    const ref = refOf(at);
    try {
      await this.api.delete(specOf(ref), undefined, undefined, undefined, undefined, 'Foreground');
    } catch (err) {
      if (statusOf(err) !== 404 && !unserved(err)) throw this.error(`delete ${ref.kind} ${ref.namespace}/${ref.name}`, err);
    }
  }

  private error(what: string, err: unknown): AgentError {
    return kubeError(what, err, this.fields.source);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.informers.values()].map((i) => i.informer.stop()));
    this.informers.clear();
  }
}

function withKind(o: k8s.KubernetesObject, kind: WorkloadType): KubeObject {
  return typed(o, { apiVersion: WORKLOAD_TYPES[kind].apiVersion, kind });
}

/** The API's answer with the type it was asked for (a list's items, and some answers, carry none). */
function typed(o: k8s.KubernetesObject, as: { apiVersion: string; kind: string }): KubeObject {
  return { ...o, apiVersion: as.apiVersion, kind: as.kind } as KubeObject;
}

function specOf(ref: Ref): k8s.KubernetesObject & { metadata: { name: string } } {
  return { apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } };
}

/** The client found no such type in the API's discovery: none of it can exist there. */
const unserved = (err: unknown): boolean => /Unrecognized API version and kind/.test((err as Error)?.message ?? '');

export function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  return typeof e.code === 'number' ? e.code : typeof e.statusCode === 'number' ? e.statusCode : undefined;
}

interface KubeStatus {
  message?: string;
  reason?: string;
  details?: { causes?: Array<{ field?: string; message?: string }> };
}

function statusBody(err: unknown): KubeStatus {
  const body = (err as { body?: unknown }).body;
  if (typeof body === 'object' && body !== null) return body as KubeStatus;
  if (typeof body === 'string') {
    try {
      return JSON.parse(body) as KubeStatus;
    } catch {
      return { message: body };
    }
  }
  return {};
}

/**
 * The API server's answer as the agent's error: a refused manifest (422) is
 * INVALID_ARGUMENT naming the manifest's field, a field another manager owns
 * (409) FAILED_PRECONDITION, credentials the cluster refuses
 * FAILED_PRECONDITION, no answer UNAVAILABLE.
 */
export function kubeError(what: string, err: unknown, source: string): AgentError {
  if (err instanceof AgentError) return err;
  const code = statusOf(err);
  const status = statusBody(err);
  const message = status.message ?? (err as Error).message ?? String(err);
  switch (code) {
    case 422: {
      const cause = status.details?.causes?.[0];
      return new InvalidArgumentError(`${source}${cause?.field ? `.${cause.field}` : ''}`, `the cluster refused ${what}: ${message}`, { cause: err });
    }
    case 404:
      return new NotFoundError(`${what}: ${message}`);
    case 409:
      return status.reason === 'AlreadyExists' ? new AlreadyExistsError(`${what}: ${message}`) : new FailedPreconditionError(`${what}: ${message}`);
    case 401:
    case 403:
      return new FailedPreconditionError(`${what}: the cluster refused the agent's credentials: ${message}`);
    case undefined:
      // The client looks the type up in the API's discovery first.
      if (unserved(err)) return new FailedPreconditionError(`${source}: the cluster does not serve ${what}: ${message}`);
      return new UnavailableError(`${what}: the cluster did not answer: ${message}`, { cause: err });
    default:
      return code >= 500 ? new UnavailableError(`${what}: ${message}`, { cause: err }) : new DriverError(DriverNames.K8s, `${what}: ${message}`, { cause: err });
  }
}
