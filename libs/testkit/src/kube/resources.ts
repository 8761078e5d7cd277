// The resource types the fake serves, and the errors that name them the way
// the real apiserver does (`deployments.apps "x" not found`).
import { ApiError } from './json';

export interface Resource {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly plural: string;
  readonly singular: string;
  readonly namespaced: boolean;
  readonly shortNames: readonly string[];
  /** `kubectl get all` lists the resources in category "all". */
  readonly categories: readonly string[];
  /** Has a /status subresource: writes to the main resource keep the old status. */
  readonly status: boolean;
  readonly scale: boolean;
}

const r = (group: string, kind: string, plural: string, opts: Partial<Resource> = {}): Resource => ({
  group,
  version: 'v1',
  kind,
  plural,
  singular: kind.toLowerCase(),
  namespaced: true,
  shortNames: [],
  categories: [],
  status: false,
  scale: false,
  ...opts,
});

export const RESOURCES: readonly Resource[] = [
  r('', 'Namespace', 'namespaces', { namespaced: false, shortNames: ['ns'], status: true }),
  r('', 'Node', 'nodes', { namespaced: false, shortNames: ['no'], status: true }),
  r('', 'Pod', 'pods', { shortNames: ['po'], categories: ['all'], status: true }),
  r('', 'Service', 'services', { shortNames: ['svc'], categories: ['all'], status: true }),
  r('', 'ServiceAccount', 'serviceaccounts', { shortNames: ['sa'] }),
  r('', 'ConfigMap', 'configmaps', { shortNames: ['cm'] }),
  r('', 'Secret', 'secrets'),
  r('', 'Event', 'events', { shortNames: ['ev'] }),
  r('apps', 'Deployment', 'deployments', { shortNames: ['deploy'], categories: ['all'], status: true, scale: true }),
  r('apps', 'ReplicaSet', 'replicasets', { shortNames: ['rs'], categories: ['all'], status: true, scale: true }),
  r('apps', 'StatefulSet', 'statefulsets', { shortNames: ['sts'], categories: ['all'], status: true, scale: true }),
  r('batch', 'Job', 'jobs', { categories: ['all'], status: true }),
];

export const apiVersionOf = (res: Resource): string => (res.group ? `${res.group}/${res.version}` : res.version);

/** "deployments.apps" or "pods": how error messages name a resource. */
const qualified = (res: Resource): string => (res.group ? `${res.plural}.${res.group}` : res.plural);

export function byPath(group: string, version: string, plural: string): Resource | undefined {
  return RESOURCES.find((x) => x.group === group && x.version === version && x.plural === plural);
}

export function byKind(apiVersion: string, kind: string): Resource | undefined {
  return RESOURCES.find((x) => apiVersionOf(x) === apiVersion && x.kind === kind);
}

export function mustKind(kind: string): Resource {
  const res = RESOURCES.find((x) => x.kind === kind);
  if (!res) throw new Error(`no resource of kind ${kind}`);
  return res;
}

const details = (res: Resource, name: string): Record<string, unknown> => ({ name, group: res.group, kind: res.plural });

export const notFound = (res: Resource, name: string): ApiError => new ApiError(404, 'NotFound', `${qualified(res)} "${name}" not found`, details(res, name));

export const alreadyExists = (res: Resource, name: string): ApiError =>
  new ApiError(409, 'AlreadyExists', `${qualified(res)} "${name}" already exists`, details(res, name));

export const staleWrite = (res: Resource, name: string): ApiError =>
  new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(res)} "${name}": the object has been modified; please apply your changes to the latest version and try again`, details(res, name));

/** 422 with the field causes, as validation failures come back. */
export function invalid(res: Resource, name: string, causes: Array<{ field: string; message: string }>): ApiError {
  const kind = res.group ? `${res.kind}.${res.group}` : res.kind;
  const text = causes.map((c) => `${c.field}: ${c.message}`).join(', ');
  return new ApiError(422, 'Invalid', `${kind} "${name}" is invalid: ${text}`, {
    ...details(res, name),
    kind: res.kind,
    causes: causes.map((c) => ({ reason: 'FieldValueInvalid', message: c.message, field: c.field })),
  });
}
