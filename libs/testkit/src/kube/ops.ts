// The apiserver's write semantics, shared by the HTTP handlers and the fake's
// controllers: create, replace, patch, server-side apply and delete, with
// metadata (uid, generation, resourceVersion), status subresources,
// managedFields, finalizers and propagation policies.
import { randomUUID } from 'node:crypto';
import { load } from 'js-yaml';
import { recordUpdate, serverSideApply } from './apply';
import { applyDefaults, IpPool, qosClass, validate } from './defaults';
import { ApiError, badRequest, child, deepEqual, isObject, now, type JsonObject, type KubeObject } from './json';
import { jsonPatch, mergePatch } from './patch';
import { alreadyExists, apiVersionOf, byKind, mustKind, notFound, staleWrite, type Resource } from './resources';
import type { Store } from './store';

export interface WriteOpts {
  /** Who writes: recorded in managedFields. */
  readonly manager: string;
  readonly subresource?: 'status';
  readonly dryRun?: boolean;
}

export interface DeleteOpts {
  readonly propagationPolicy?: string;
  readonly gracePeriodSeconds?: number;
  readonly preconditions?: { uid?: string; resourceVersion?: string };
  readonly dryRun?: boolean;
}

const NAMESPACES = mustKind('Namespace');
const ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/** Five characters as generateName and ReplicaSets append them. */
export const randomSuffix = (n = 5): string => Array.from({ length: n }, () => ALPHABET[Math.floor(Math.random() * ALPHABET.length)]).join('');

/** Everything but metadata and status: what bumps metadata.generation when it changes. */
const specOf = (o: KubeObject): JsonObject => Object.fromEntries(Object.entries(o).filter(([k]) => !['metadata', 'status', 'apiVersion', 'kind'].includes(k)));

export class Ops {
  private readonly serviceIps = new IpPool('10.96');

  constructor(readonly store: Store) {}

  get(res: Resource, ns: string | undefined, name: string): KubeObject {
    const obj = this.store.get(res, ns, name);
    if (!obj) throw notFound(res, name);
    return obj;
  }

  create(res: Resource, ns: string | undefined, body: unknown, opts: WriteOpts): KubeObject {
    const obj = this.checkBody(res, ns, body);
    const meta = obj.metadata;
    if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randomSuffix()}`;
    if (!meta.name) throw new ApiError(422, 'Invalid', `${res.kind} "" is invalid: metadata.name: Required value: name or generateName is required`);
    this.checkNamespace(res, meta.namespace);
    if (this.store.get(res, meta.namespace, meta.name)) throw alreadyExists(res, meta.name);
    Object.assign(meta, { uid: randomUUID(), creationTimestamp: now(), generation: 1 });
    meta.resourceVersion = '';
    delete meta.deletionTimestamp;
    if (res.status) delete obj.status;
    if (res.kind === 'Pod') obj.status = { phase: 'Pending', qosClass: qosClass(obj.spec) };
    const managed = meta.managedFields;
    delete meta.managedFields;
    applyDefaults(res, obj, this.serviceIps);
    validate(res, obj, undefined);
    if (managed) meta.managedFields = managed;
    else recordUpdate(undefined, obj, opts.manager);
    return opts.dryRun ? obj : this.store.write(res, obj);
  }

  /** PUT: the whole object (or, for the status subresource, its status). */
  update(res: Resource, ns: string | undefined, name: string, body: unknown, opts: WriteOpts): KubeObject {
    const old = this.get(res, ns, name);
    const next = this.checkBody(res, ns, body);
    if (next.metadata.name !== name) throw badRequest(`the name of the object (${next.metadata.name}) does not match the name on the URL (${name})`);
    if (next.metadata.resourceVersion && next.metadata.resourceVersion !== old.metadata.resourceVersion) throw staleWrite(res, name);
    return this.commit(res, old, next, opts, true);
  }

  /** PATCH of any kind; an apply patch of a missing object creates it. */
  patch(res: Resource, ns: string | undefined, name: string, contentType: string, raw: string, opts: WriteOpts & { force?: boolean }): KubeObject {
    const old = this.store.get(res, ns, name);
    if (contentType.startsWith('application/apply-patch')) {
      if (!opts.manager) throw new ApiError(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
      const config = this.checkBody(res, ns, parse(raw, true));
      if (config.metadata.name !== name) throw badRequest(`the name of the object (${config.metadata.name}) does not match the name on the URL (${name})`);
      if (!old) {
        if (opts.subresource) throw notFound(res, name);
        return this.create(res, ns, serverSideApply(undefined, config, opts.manager, true), opts);
      }
      return this.commit(res, old, serverSideApply(old, config, opts.manager, opts.force === true, opts.subresource), opts, false);
    }
    if (!old) throw notFound(res, name);
    const body = parse(raw, false);
    let next: unknown;
    if (contentType.startsWith('application/json-patch+json')) next = jsonPatch(old, body);
    else if (contentType.startsWith('application/merge-patch+json')) next = mergePatch(old, body, false);
    else if (contentType.startsWith('application/strategic-merge-patch+json')) next = mergePatch(old, body, true);
    else throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`);
    const wanted = isObject(body) ? (body.metadata as JsonObject | undefined)?.resourceVersion : undefined;
    if (typeof wanted === 'string' && wanted !== old.metadata.resourceVersion) throw staleWrite(res, name);
    return this.commit(res, old, this.checkBody(res, ns, next), opts, true);
  }

  /** Sets spec.replicas: the /scale subresource. */
  scale(res: Resource, ns: string | undefined, name: string, replicas: number, manager: string): KubeObject {
    const old = this.get(res, ns, name);
    const next = structuredClone(old);
    (next.spec as JsonObject).replicas = replicas;
    return this.commit(res, old, next, { manager }, true);
  }

  /**
   * DELETE. Returns the object and whether it is gone already: finalizers,
   * Foreground propagation, a namespace's content and a pod's grace period
   * keep it, marked with deletionTimestamp, until the controllers finish.
   */
  delete(res: Resource, ns: string | undefined, name: string, opts: DeleteOpts): { object: KubeObject; gone: boolean } {
    const obj = this.get(res, ns, name);
    const pre = opts.preconditions ?? {};
    if (pre.uid && pre.uid !== obj.metadata.uid) throw new ApiError(409, 'Conflict', `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${obj.metadata.uid}`);
    if (pre.resourceVersion && pre.resourceVersion !== obj.metadata.resourceVersion)
      throw new ApiError(409, 'Conflict', `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${obj.metadata.resourceVersion}`);
    if (opts.dryRun) return { object: obj, gone: false };
    const meta = obj.metadata;
    const finalizers = new Set(meta.finalizers ?? []);
    // batch/v1 Jobs still orphan their pods when the client does not say otherwise.
    const policy = opts.propagationPolicy ?? (res.kind === 'Job' ? 'Orphan' : 'Background');
    if (policy === 'Orphan') this.orphan(meta.uid);
    if (policy === 'Foreground' && !meta.deletionTimestamp) finalizers.add('foregroundDeletion');
    const grace = res.kind === 'Pod' && typeof (obj.spec as JsonObject | undefined)?.nodeName === 'string' ? (opts.gracePeriodSeconds ?? Number((obj.spec as JsonObject).terminationGracePeriodSeconds ?? 30)) : 0;
    if (res.kind === 'Namespace') child(obj, 'status').phase = 'Terminating';
    if (finalizers.size === 0 && grace === 0 && res.kind !== 'Namespace') return { object: this.store.remove(res, obj), gone: true };
    if (meta.deletionTimestamp && deepEqual([...finalizers], meta.finalizers ?? [])) return { object: obj, gone: false };
    meta.deletionTimestamp ??= new Date(Date.now() + grace * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    meta.deletionGracePeriodSeconds ??= grace;
    if (finalizers.size > 0) meta.finalizers = [...finalizers];
    return { object: this.store.write(res, obj), gone: false };
  }

  /** Removes a deleting object whose finalizers are all done; the kubelet's last word on a pod. */
  finish(res: Resource, obj: KubeObject): void {
    if (obj.metadata.deletionTimestamp && (obj.metadata.finalizers ?? []).length === 0) this.store.remove(res, obj);
  }

  private orphan(uid: string): void {
    for (const { res, object } of this.store.all()) {
      const refs = object.metadata.ownerReferences ?? [];
      if (!refs.some((r) => r.uid === uid)) continue;
      const next = structuredClone(object);
      next.metadata.ownerReferences = refs.filter((r) => r.uid !== uid);
      if (next.metadata.ownerReferences.length === 0) delete next.metadata.ownerReferences;
      this.commit(res, object, next, { manager: 'kube-controller-manager' }, true);
    }
  }

  /** The shared end of every update: server-owned metadata, status rules, generation, defaults, validation, finalizers. */
  private commit(res: Resource, old: KubeObject, body: KubeObject, opts: WriteOpts, record: boolean): KubeObject {
    let next = body;
    if (opts.subresource === 'status') next = { ...structuredClone(old), status: body.status };
    else if (res.status) next.status = old.status;
    const keep = ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation', 'name', 'namespace'] as const;
    for (const k of keep) {
      const v = old.metadata[k];
      if (v === undefined) delete next.metadata[k];
      else (next.metadata as JsonObject)[k] = v;
    }
    if (record) {
      next.metadata.managedFields = old.metadata.managedFields;
      recordUpdate(old, next, opts.manager, opts.subresource);
    }
    applyDefaults(res, next, this.serviceIps);
    validate(res, next, old);
    if (!deepEqual(specOf(old), specOf(next))) next.metadata.generation = (old.metadata.generation ?? 1) + 1;
    if (old.metadata.deletionTimestamp && (old.metadata.finalizers ?? []).length > 0 && (next.metadata.finalizers ?? []).length === 0 && res.kind !== 'Namespace') {
      return opts.dryRun ? next : this.store.remove(res, next);
    }
    if (deepEqual(old, { ...next, metadata: { ...next.metadata, resourceVersion: old.metadata.resourceVersion } })) return old;
    return opts.dryRun ? next : this.store.write(res, next);
  }

  /** The body as an object of this resource in this namespace (400 otherwise). */
  private checkBody(res: Resource, ns: string | undefined, body: unknown): KubeObject {
    if (!isObject(body) || !isObject(body.metadata)) throw badRequest('Object \'metadata\' is missing in the request body');
    const obj = structuredClone(body) as KubeObject;
    obj.apiVersion ??= apiVersionOf(res);
    obj.kind ??= res.kind;
    if (byKind(obj.apiVersion, obj.kind) !== res) throw badRequest(`the API version in the data (${obj.apiVersion}) does not match the expected API version (${apiVersionOf(res)})`);
    if (res.namespaced) {
      if (obj.metadata.namespace && ns && obj.metadata.namespace !== ns) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      obj.metadata.namespace = ns ?? obj.metadata.namespace;
    } else delete obj.metadata.namespace;
    return obj;
  }

  private checkNamespace(res: Resource, ns: string | undefined): void {
    if (!res.namespaced) return;
    const owner = this.store.get(NAMESPACES, undefined, ns ?? '');
    if (!owner) throw notFound(NAMESPACES, ns ?? '');
    if (owner.metadata.deletionTimestamp) throw new ApiError(403, 'Forbidden', `${res.plural} is forbidden: unable to create new content in namespace ${ns} because it is being terminated`);
  }
}

/** A request body: JSON, or YAML for apply patches. */
function parse(raw: string, yaml: boolean): unknown {
  try {
    return yaml ? load(raw) : JSON.parse(raw);
  } catch (err) {
    throw badRequest(`error decoding ${yaml ? 'YAML' : 'JSON'}: ${(err as Error).message}`);
  }
}
