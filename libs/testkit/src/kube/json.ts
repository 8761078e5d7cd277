// JSON helpers and the apiserver's error shape, shared by every part of the
// fake: objects travel as plain JSON and are read through narrowing helpers.

export type JsonObject = Record<string, unknown>;

/** What every stored object has; everything else is read with the helpers below. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
  creationTimestamp: string;
  generation?: number;
  generateName?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
  managedFields?: JsonObject[];
  [field: string]: unknown;
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value at a path of object keys, or undefined where any step is missing. */
export function at(v: unknown, ...path: string[]): unknown {
  let cur = v;
  for (const key of path) {
    if (!isObject(cur)) return undefined;
    cur = cur[key];
  }
  return cur;
}

export const objAt = (v: unknown, ...path: string[]): JsonObject => {
  const o = at(v, ...path);
  return isObject(o) ? o : {};
};
export const listAt = (v: unknown, ...path: string[]): unknown[] => {
  const o = at(v, ...path);
  return Array.isArray(o) ? (o as unknown[]) : [];
};
export const strAt = (v: unknown, ...path: string[]): string | undefined => {
  const o = at(v, ...path);
  return typeof o === 'string' ? o : undefined;
};
export const numAt = (v: unknown, ...path: string[]): number | undefined => {
  const o = at(v, ...path);
  return typeof o === 'number' ? o : undefined;
};

/** The object under key, made (empty) when absent, for writing into. */
export function child(parent: JsonObject, key: string): JsonObject {
  const cur = parent[key];
  if (isObject(cur)) return cur;
  const made: JsonObject = {};
  parent[key] = made;
  return made;
}

export function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isObject(v)) for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return out;
}

/** JSON text with object keys sorted: equal content, equal text. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObject(v))
    return `{${Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
      .join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

export const deepEqual = (a: unknown, b: unknown): boolean => canonical(a) === canonical(b);

export const now = (): string => new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/** An apiserver failure: becomes a Status object with this HTTP code. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: JsonObject,
  ) {
    super(message);
  }

  status(): JsonObject {
    return statusObject('Failure', this.code, this.reason, this.message, this.details);
  }
}

export function statusObject(status: 'Success' | 'Failure', code: number, reason: string, message: string, details?: JsonObject): JsonObject {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status,
    ...(message ? { message } : {}),
    ...(reason ? { reason } : {}),
    ...(details ? { details } : {}),
    code,
  };
}

/** Runs one controller action: one object's failure (a template the apiserver refuses) must not stop the others. */
export function guarded(fn: () => unknown): void {
  try {
    fn();
  } catch {
    /* the next step tries again */
  }
}

export const badRequest = (message: string): ApiError => new ApiError(400, 'BadRequest', message);
