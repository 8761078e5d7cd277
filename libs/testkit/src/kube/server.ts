// The HTTP face of the fake: bearer-token auth, discovery, and the REST
// routes of each resource (list/get/create/replace/patch/delete, /status,
// /scale, watch) with Status errors as the real apiserver sends them.
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as discovery from './discovery';
import { ApiError, badRequest, isObject, listAt, numAt, objAt, statusObject, strAt, type JsonObject, type KubeObject } from './json';
import { mergePatch } from './patch';
import type { DeleteOpts, Ops } from './ops';
import { apiVersionOf, byPath, type Resource } from './resources';
import { fieldSelector, labelSelector, selectorText } from './selectors';
import { toTable, wantsTable } from './table';
import { serveWatch, type OpenWatches } from './watch';

export interface ServerConfig {
  readonly ops: Ops;
  readonly token: string;
  readonly bookmarkMs: number;
  readonly watches: OpenWatches;
}

interface Target {
  readonly res: Resource;
  readonly namespace?: string;
  readonly name?: string;
  readonly sub?: string;
  /** The legacy /api/v1/watch/... form. */
  readonly watchPath: boolean;
}

const send = (resp: ServerResponse, code: number, body: unknown): void => {
  resp.writeHead(code, { 'Content-Type': 'application/json' });
  resp.end(JSON.stringify(body));
};

/** /api/v1/... or /apis/group/v1/...: the resource, namespace, name and subresource a path names. */
function target(path: string[]): Target | undefined {
  const [root, ...rest] = path;
  let group = '';
  if (root === 'apis') group = rest.shift() ?? '';
  else if (root !== 'api') return undefined;
  const version = rest.shift() ?? '';
  const watchPath = rest[0] === 'watch';
  if (watchPath) rest.shift();
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3 && byPath(group, version, rest[2]!)?.namespaced) {
    namespace = rest[1];
    rest.splice(0, 2);
  }
  const res = byPath(group, version, rest[0] ?? '');
  if (!res || rest.length > 3 || (namespace !== undefined && !res.namespaced)) return undefined;
  return { res, namespace, name: rest[1], sub: rest[2], watchPath };
}

const notFoundPath = (): ApiError => new ApiError(404, 'NotFound', 'the server could not find the requested resource', {});

function discoveryDoc(path: string[], host: string): JsonObject | undefined {
  const p = path.join('/');
  if (p === 'version') return discovery.version();
  if (p === 'api') return discovery.coreVersions(host);
  if (p === 'apis') return discovery.groupList();
  if (p === 'api/v1') return discovery.resourceList('v1');
  if (path[0] === 'apis' && path.length === 2) return discovery.apiGroup(path[1]!);
  if (path[0] === 'apis' && path.length === 3) return discovery.resourceList(`${path[1]}/${path[2]}`);
  if (p === 'openapi/v3') return discovery.openapiRoot();
  if (p.startsWith('openapi/v3/')) return discovery.openapiGroupVersion(p.slice('openapi/v3/'.length));
  return undefined;
}

/** Who is writing, for managedFields: ?fieldManager=, else the client's program name ("kubectl"). */
const managerOf = (q: URLSearchParams, req: IncomingMessage): string => q.get('fieldManager') ?? (req.headers['user-agent'] ?? 'unknown').split('/')[0] ?? 'unknown';

/** DeleteOptions from the body (kubectl) or the query (?propagationPolicy=). */
function deleteOptions(q: URLSearchParams, body: string): DeleteOpts {
  const b: unknown = body.trim() ? JSON.parse(body) : {};
  const policy = strAt(b, 'propagationPolicy') ?? q.get('propagationPolicy') ?? undefined;
  const orphan = (isObject(b) ? b.orphanDependents : undefined) ?? (q.has('orphanDependents') ? q.get('orphanDependents') === 'true' : undefined);
  const grace = numAt(b, 'gracePeriodSeconds') ?? (q.has('gracePeriodSeconds') ? Number(q.get('gracePeriodSeconds')) : undefined);
  return {
    propagationPolicy: policy ?? (orphan === true ? 'Orphan' : orphan === false ? 'Background' : undefined),
    gracePeriodSeconds: grace,
    preconditions: { uid: strAt(b, 'preconditions', 'uid'), resourceVersion: strAt(b, 'preconditions', 'resourceVersion') },
    dryRun: listAt(b, 'dryRun').length > 0 || q.has('dryRun'),
  };
}

function scaleOf(o: KubeObject): JsonObject {
  const { name, namespace, uid, resourceVersion, creationTimestamp } = o.metadata;
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name, namespace, uid, resourceVersion, creationTimestamp },
    spec: { replicas: numAt(o, 'spec', 'replicas') ?? 0 },
    status: { replicas: numAt(o, 'status', 'replicas') ?? 0, selector: selectorText(objAt(o, 'spec', 'selector')) },
  };
}

/** Builds the request handler of a fake apiserver. */
export function handler(cfg: ServerConfig): (req: IncomingMessage, resp: ServerResponse) => void {
  const { ops } = cfg;
  const store = ops.store;

  function resourceRequest(req: IncomingMessage, resp: ServerResponse, t: Target, q: URLSearchParams, body: string): void {
    const { res, namespace, name, sub } = t;
    const method = req.method ?? 'GET';
    const accept = req.headers.accept;
    const withKind = (o: KubeObject): JsonObject => ({ ...o, apiVersion: apiVersionOf(res), kind: res.kind });
    const render = (o: KubeObject): JsonObject => (wantsTable(accept) ? toTable(res.kind, [o], o.metadata.resourceVersion, q.get('includeObject')) : withKind(o));
    const dryRun = q.has('dryRun');
    if (sub !== undefined && !((sub === 'status' && res.status) || (sub === 'scale' && res.scale))) throw notFoundPath();
    if (name === undefined || t.watchPath) {
      const labels = labelSelector(q.get('labelSelector'));
      const fields = fieldSelector(q.get('fieldSelector'), res.kind);
      const matches = (o: KubeObject): boolean => (name === undefined || o.metadata.name === name) && labels(o) && fields(o);
      if (method === 'GET' && (t.watchPath || q.get('watch') === 'true' || q.get('watch') === '1')) {
        const timeout = q.get('timeoutSeconds');
        return serveWatch(store, cfg.watches, { res, namespace, matches, resourceVersion: q.get('resourceVersion'), bookmarks: q.get('allowWatchBookmarks') === 'true', timeoutSeconds: timeout ? Number(timeout) : undefined, render }, resp, cfg.bookmarkMs);
      }
      if (method === 'GET') {
        const all = store.list(res, namespace).filter(matches);
        const limit = Number(q.get('limit') ?? 0);
        const offset = q.get('continue') ? Number(Buffer.from(q.get('continue')!, 'base64url').toString()) : 0;
        const items = limit > 0 ? all.slice(offset, offset + limit) : all.slice(offset);
        const more = limit > 0 && offset + limit < all.length;
        const meta = { resourceVersion: store.resourceVersion, ...(more ? { continue: Buffer.from(String(offset + limit)).toString('base64url'), remainingItemCount: all.length - offset - limit } : {}) };
        if (wantsTable(accept)) return send(resp, 200, { ...toTable(res.kind, items, store.resourceVersion, q.get('includeObject')), metadata: meta });
        // Items of a built-in list carry no kind or apiVersion, as from the real apiserver.
        const bare = items.map(({ apiVersion: _v, kind: _k, ...rest }) => rest);
        return send(resp, 200, { kind: `${res.kind}List`, apiVersion: apiVersionOf(res), metadata: meta, items: bare });
      }
      if (method === 'POST' && name === undefined) return send(resp, 201, withKind(ops.create(res, namespace, JSON.parse(body), { manager: managerOf(q, req), dryRun })));
      throw new ApiError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
    }
    if (sub === 'scale') {
      if (method === 'GET') return send(resp, 200, scaleOf(ops.get(res, namespace, name)));
      const current = scaleOf(ops.get(res, namespace, name));
      const next = method === 'PUT' ? (JSON.parse(body) as unknown) : method === 'PATCH' ? mergePatch(current, JSON.parse(body), false) : undefined;
      const replicas = numAt(next, 'spec', 'replicas');
      if (replicas === undefined) throw badRequest('spec.replicas is required');
      return send(resp, 200, scaleOf(ops.scale(res, namespace, name, replicas, managerOf(q, req))));
    }
    const subresource = sub === 'status' ? 'status' : undefined;
    switch (method) {
      case 'GET':
        return send(resp, 200, render(ops.get(res, namespace, name)));
      case 'PUT':
        return send(resp, 200, withKind(ops.update(res, namespace, name, JSON.parse(body), { manager: managerOf(q, req), subresource, dryRun })));
      case 'PATCH': {
        const type = req.headers['content-type'] ?? '';
        const apply = type.startsWith('application/apply-patch');
        const existed = store.get(res, namespace, name) !== undefined;
        const manager = apply ? (q.get('fieldManager') ?? '') : managerOf(q, req);
        const out = ops.patch(res, namespace, name, type, body, { manager, subresource, dryRun, force: q.get('force') === 'true' });
        return send(resp, existed ? 200 : 201, withKind(out));
      }
      case 'DELETE': {
        const options = deleteOptions(q, body);
        if (res.kind === 'Job' && !options.propagationPolicy) {
          resp.setHeader('Warning', '299 - "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning"');
        }
        const { object, gone } = ops.delete(res, namespace, name, options);
        if (gone && res.kind !== 'Pod') return send(resp, 200, statusObject('Success', 200, '', '', { name, group: res.group, kind: res.plural, uid: object.metadata.uid }));
        return send(resp, 200, withKind(object));
      }
      default:
        throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
  }

  return (req, resp) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname.split('/').filter((s) => s !== '');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        if (['healthz', 'livez', 'readyz'].includes(path[0] ?? '')) {
          resp.writeHead(200, { 'Content-Type': 'text/plain' });
          return resp.end('ok');
        }
        if (req.headers.authorization !== `Bearer ${cfg.token}`) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
        const doc = req.method === 'GET' ? discoveryDoc(path, req.headers.host ?? '') : undefined;
        if (doc) return send(resp, 200, doc);
        const t = target(path);
        if (!t) throw notFoundPath();
        if (req.headers['content-type']?.includes('protobuf')) {
          throw new ApiError(415, 'UnsupportedMediaType', 'the fake apiserver reads JSON and YAML bodies only, not protobuf (kubectl create <kind> sends protobuf; kubectl create -f does not)');
        }
        resourceRequest(req, resp, t, url.searchParams, Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        const e = err instanceof ApiError ? err : err instanceof SyntaxError ? badRequest(err.message) : new ApiError(500, 'InternalError', String(err));
        if (!resp.headersSent) send(resp, e.code, e.status());
        else resp.end();
      }
    });
  };
}

