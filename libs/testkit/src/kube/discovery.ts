// Discovery as kubectl and client libraries read it: /version, /api, /apis,
// one APIResourceList per group version, and the OpenAPI v3 documents that
// tell kubectl the server validates fields itself (so it skips client-side
// schema validation).
import { createHash } from 'node:crypto';
import type { JsonObject } from './json';
import { apiVersionOf, RESOURCES, type Resource } from './resources';

const VERBS = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];
const GROUP_VERSIONS = [...new Set(RESOURCES.map(apiVersionOf))];

export const version = (): JsonObject => ({
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-fake',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2025-01-01T00:00:00Z',
  goVersion: 'go1.23.4',
  compiler: 'gc',
  platform: 'linux/amd64',
});

export const coreVersions = (host: string): JsonObject => ({
  kind: 'APIVersions',
  versions: ['v1'],
  serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: host }],
});

function group(name: string): JsonObject {
  const gv = { groupVersion: `${name}/v1`, version: 'v1' };
  return { name, versions: [gv], preferredVersion: gv };
}

export const groupList = (): JsonObject => ({
  kind: 'APIGroupList',
  apiVersion: 'v1',
  groups: [...new Set(RESOURCES.map((r) => r.group).filter((g) => g !== ''))].map(group),
});

/** /apis/<group>: one group's versions, or undefined for a group the fake does not serve. */
export function apiGroup(name: string): JsonObject | undefined {
  return RESOURCES.some((r) => r.group === name) ? { kind: 'APIGroup', apiVersion: 'v1', ...group(name) } : undefined;
}

/** The APIResourceList of a group version (with the status and scale subresources), or undefined. */
export function resourceList(groupVersion: string): JsonObject | undefined {
  const list = RESOURCES.filter((r) => apiVersionOf(r) === groupVersion);
  if (list.length === 0) return undefined;
  const resources = list.flatMap((r) => {
    const main = { name: r.plural, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs: VERBS, ...(r.shortNames.length ? { shortNames: r.shortNames } : {}), ...(r.categories.length ? { categories: r.categories } : {}) };
    const subs: JsonObject[] = [];
    if (r.status) subs.push({ name: `${r.plural}/status`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: ['get', 'patch', 'update'] });
    if (r.scale) subs.push({ name: `${r.plural}/scale`, singularName: '', namespaced: r.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
    return [main, ...subs];
  });
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources };
}

/** "api/v1" or "apis/apps/v1": how OpenAPI v3 names a group version. */
const gvPath = (gv: string): string => (gv.includes('/') ? `apis/${gv}` : `api/${gv}`);

export function openapiRoot(): JsonObject {
  const paths: JsonObject = {};
  for (const gv of GROUP_VERSIONS) {
    const hash = createHash('sha256').update(JSON.stringify(openapiGroupVersion(gvPath(gv)))).digest('hex').slice(0, 32).toUpperCase();
    paths[gvPath(gv)] = { serverRelativeURL: `/openapi/v3/${gvPath(gv)}?hash=${hash}` };
  }
  return { paths };
}

const queryParam = (name: string): JsonObject => ({ name, in: 'query', schema: { type: 'string', uniqueItems: true } });

function itemPath(r: Resource): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  return r.namespaced ? `${base}/namespaces/{namespace}/${r.plural}/{name}` : `${base}/${r.plural}/{name}`;
}

/**
 * /openapi/v3/<api/v1|apis/group/v1>: paths only (no schemas). kubectl looks
 * for the fieldValidation parameter on each kind's PATCH to decide that the
 * server validates; without it kubectl would need full schemas to validate.
 */
export function openapiGroupVersion(path: string): JsonObject | undefined {
  const list = RESOURCES.filter((r) => gvPath(apiVersionOf(r)) === path);
  if (list.length === 0) return undefined;
  const paths: JsonObject = {};
  for (const r of list) {
    const gvk = { group: r.group, version: r.version, kind: r.kind };
    const op = (verb: string): JsonObject => ({
      operationId: `${verb}${r.kind}`,
      'x-kubernetes-action': verb,
      'x-kubernetes-group-version-kind': gvk,
      parameters: ['dryRun', 'fieldManager', 'fieldValidation', ...(verb === 'patch' ? ['force'] : [])].map(queryParam),
      responses: { '200': { description: 'OK' } },
    });
    paths[itemPath(r)] = { get: op('get'), put: op('replace'), patch: op('patch'), delete: op('delete') };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes', version: 'v1.32.0' }, paths, components: { schemas: {} } };
}
