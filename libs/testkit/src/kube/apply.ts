// Server-side apply and metadata.managedFields: which manager owns which
// fields (FieldsV1), conflicts between managers, and removal of the fields a
// manager stops applying.
import { ApiError, canonical, deepEqual, isObject, now, type JsonObject, type KubeObject } from './json';
import { itemKey, listKeys, mergePatch } from './patch';

/** A field path in FieldsV1 steps ("f:spec", `k:{"name":"app"}`, "." for a list item itself), JSON-encoded. */
type FieldSet = Set<string>;

const isItem = (path: string): boolean => path.endsWith(',"."]');

/** metadata the server owns: never part of a manager's fields. */
const SERVER_META = ['name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'selfLink'];

/** The part of obj a write through the main resource or the status subresource touches. */
function scope(obj: unknown, subresource: string | undefined): JsonObject {
  if (!isObject(obj)) return {};
  if (subresource === 'status') return isObject(obj.status) ? { status: obj.status } : {};
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(obj)) if (k !== 'apiVersion' && k !== 'kind' && k !== 'status') out[k] = v;
  if (isObject(out.metadata)) out.metadata = Object.fromEntries(Object.entries(out.metadata).filter(([k]) => !SERVER_META.includes(k)));
  return out;
}

function walk(v: unknown, prefix: string[], out: FieldSet): void {
  if (isObject(v) && Object.keys(v).length > 0) {
    for (const [k, c] of Object.entries(v)) walk(c, [...prefix, `f:${k}`], out);
    return;
  }
  const keys = Array.isArray(v) ? listKeys(v as unknown[]) : undefined;
  if (keys) {
    for (const item of v as unknown[]) {
      const p = [...prefix, `k:${itemKey(item, keys)}`];
      out.add(JSON.stringify([...p, '.']));
      walk(item, p, out);
    }
    return;
  }
  if (prefix.length > 0) out.add(JSON.stringify(prefix));
}

function fieldSet(obj: unknown, subresource: string | undefined): FieldSet {
  const out: FieldSet = new Set();
  walk(scope(obj, subresource), [], out);
  return out;
}

function toFieldsV1(set: FieldSet): JsonObject {
  const root: JsonObject = {};
  for (const p of set) {
    let node = root;
    for (const step of JSON.parse(p) as string[]) {
      const next = node[step];
      node = isObject(next) ? next : (node[step] = {});
    }
  }
  return root;
}

function fromFieldsV1(v: unknown, prefix: string[] = [], out: FieldSet = new Set()): FieldSet {
  const kids = isObject(v) ? Object.entries(v) : [];
  if (kids.length === 0 && prefix.length > 0) out.add(JSON.stringify(prefix));
  for (const [step, sub] of kids) {
    if (step === '.') out.add(JSON.stringify([...prefix, '.']));
    else fromFieldsV1(sub, [...prefix, step], out);
  }
  return out;
}

/** The value a path leads to in obj, or undefined. */
function valueAt(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const step of JSON.parse(path) as string[]) {
    if (step === '.') continue;
    if (step.startsWith('f:')) cur = isObject(cur) ? cur[step.slice(2)] : undefined;
    else {
      const id = JSON.parse(step.slice(2)) as JsonObject;
      cur = Array.isArray(cur) ? (cur as unknown[]).find((i) => itemKey(i, Object.keys(id)) === canonical(id)) : undefined;
    }
    if (cur === undefined) return undefined;
  }
  return cur;
}

function removeAt(obj: JsonObject, path: string): void {
  const steps = JSON.parse(path) as string[];
  const itemItself = steps[steps.length - 1] === '.';
  const last = itemItself ? steps[steps.length - 2] : steps[steps.length - 1];
  const parent = valueAt(obj, JSON.stringify(steps.slice(0, itemItself ? -2 : -1)));
  if (!last) return;
  if (last.startsWith('f:') && isObject(parent)) delete parent[last.slice(2)];
  if (last.startsWith('k:') && Array.isArray(parent)) {
    const id = JSON.parse(last.slice(2)) as JsonObject;
    const i = (parent as unknown[]).findIndex((x) => itemKey(x, Object.keys(id)) === canonical(id));
    if (i >= 0) parent.splice(i, 1);
  }
}

/** ".spec.template.spec.containers[name="app"].image", as conflict messages show a path. */
function dotted(path: string): string {
  return (JSON.parse(path) as string[])
    .filter((s) => s !== '.')
    .map((s) => (s.startsWith('f:') ? `.${s.slice(2)}` : `[${Object.entries(JSON.parse(s.slice(2)) as JsonObject).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}]`))
    .join('');
}

interface Entry {
  manager: string;
  operation: 'Apply' | 'Update';
  subresource?: string;
  apiVersion: string;
  time: string;
  set: FieldSet;
}

function entries(obj: KubeObject | undefined): Entry[] {
  return (obj?.metadata.managedFields ?? []).map((m) => ({
    manager: String(m.manager ?? ''),
    operation: m.operation === 'Apply' ? 'Apply' : 'Update',
    subresource: typeof m.subresource === 'string' ? m.subresource : undefined,
    apiVersion: String(m.apiVersion ?? ''),
    time: String(m.time ?? now()),
    set: fromFieldsV1(m.fieldsV1),
  }));
}

function store(obj: KubeObject, list: Entry[]): void {
  const kept = list.filter((e) => e.set.size > 0);
  obj.metadata.managedFields = kept.map((e) => ({
    manager: e.manager,
    operation: e.operation,
    apiVersion: e.apiVersion,
    time: e.time,
    fieldsType: 'FieldsV1',
    fieldsV1: toFieldsV1(e.set),
    ...(e.subresource ? { subresource: e.subresource } : {}),
  }));
  if (kept.length === 0) delete obj.metadata.managedFields;
}

const same = (e: Entry, manager: string, operation: Entry['operation'], subresource: string | undefined): boolean =>
  e.manager === manager && e.operation === operation && e.subresource === subresource;

/**
 * Applies config for manager onto existing (or onto nothing: a create).
 * Fields another manager owns with a different value are a 409 Conflict
 * unless force takes them over; fields this manager applied before and no
 * longer applies are removed unless someone else owns them.
 */
export function serverSideApply(existing: KubeObject | undefined, config: KubeObject, manager: string, force: boolean, subresource?: string): KubeObject {
  const applied = fieldSet(config, subresource);
  const list = entries(existing);
  const { name, namespace } = config.metadata;
  const base: JsonObject = existing ? structuredClone(existing) : { apiVersion: config.apiVersion, kind: config.kind, metadata: { name, namespace } };
  const conflicts: Array<{ manager: string; apiVersion: string; path: string }> = [];
  for (const e of list) {
    if (same(e, manager, 'Apply', subresource) || e.subresource !== subresource) continue;
    for (const p of applied) {
      if (!e.set.has(p) || isItem(p) || deepEqual(valueAt(base, p), valueAt(config, p))) continue;
      if (force) e.set.delete(p);
      else conflicts.push({ manager: e.manager, apiVersion: e.apiVersion, path: p });
    }
  }
  if (conflicts.length > 0) {
    const lines = conflicts.map((c) => `conflict with "${c.manager}" using ${c.apiVersion}: ${dotted(c.path)}`);
    throw new ApiError(409, 'Conflict', `Apply failed with ${conflicts.length} conflict${conflicts.length > 1 ? 's' : ''}: ${lines.join('\n')}`, {
      causes: conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with "${c.manager}" using ${c.apiVersion}`, field: dotted(c.path) })),
    });
  }
  const mine = list.find((e) => same(e, manager, 'Apply', subresource));
  const others = new Set(list.filter((e) => e !== mine).flatMap((e) => [...e.set]));
  for (const p of mine?.set ?? []) if (!applied.has(p) && !others.has(p)) removeAt(base, p);
  const merged = mergePatch(base, scope(config, subresource), true) as KubeObject;
  const unchanged = mine !== undefined && mine.set.size === applied.size && [...applied].every((p) => mine.set.has(p));
  const entry: Entry = { manager, operation: 'Apply', subresource, apiVersion: config.apiVersion, time: unchanged ? mine.time : now(), set: applied };
  store(merged, mine ? list.map((e) => (e === mine ? entry : e)) : [...list, entry]);
  return merged;
}

/** Records a non-apply write by manager: it now owns the fields it changed, and nobody owns fields that are gone. */
export function recordUpdate(old: KubeObject | undefined, next: KubeObject, manager: string, subresource?: string): void {
  const before = fieldSet(old, subresource);
  const after = fieldSet(next, subresource);
  const changed = [...after].filter((p) => !before.has(p) || (!isItem(p) && !deepEqual(valueAt(old, p), valueAt(next, p))));
  const list = entries(old);
  for (const e of list) {
    if (e.subresource !== subresource) continue;
    for (const p of e.set) if (!after.has(p)) e.set.delete(p);
    for (const p of changed) e.set.delete(p);
  }
  if (changed.length > 0) {
    const mine = list.find((e) => same(e, manager, 'Update', subresource));
    if (mine) {
      for (const p of changed) mine.set.add(p);
      mine.time = now();
      mine.apiVersion = next.apiVersion;
    } else list.push({ manager, operation: 'Update', subresource, apiVersion: next.apiVersion, time: now(), set: new Set(changed) });
  }
  store(next, list);
}
