// The three patch bodies: JSON merge patch (RFC 7386), strategic merge patch
// (merge patch whose keyed lists merge item by item) and JSON patch (RFC 6902).
import { ApiError, badRequest, canonical, deepEqual, isObject, type JsonObject } from './json';

/**
 * The fields that identify an item of a list merged by key, after the built-in
 * types' patchMergeKey/listMapKeys (containers by name, ports by port and
 * protocol, ...); undefined for an atomic list, which is replaced whole.
 */
export function listKeys(items: readonly unknown[]): readonly string[] | undefined {
  if (items.length === 0 || !items.every(isObject)) return undefined;
  const candidates = [['containerPort', 'protocol'], ['port', 'protocol'], ['mountPath'], ['devicePath'], ['name'], ['type'], ['uid']];
  return candidates.find((keys) => items.every((i) => isObject(i) && i[keys[0]!] !== undefined));
}

/** The identity of a keyed list item, as managedFields writes it: {"containerPort":80,"protocol":"TCP"}. */
export function itemKey(item: unknown, keys: readonly string[]): string {
  const id: JsonObject = {};
  for (const k of keys) id[k] = (isObject(item) ? item[k] : undefined) ?? (k === 'protocol' ? 'TCP' : undefined);
  return canonical(id);
}

/** Merge patch; strategic: keyed lists merge by key, `$patch: delete` removes an item, other `$` directives are dropped. */
export function mergePatch(target: unknown, patch: unknown, strategic: boolean): unknown {
  if (Array.isArray(patch)) return strategic ? mergeList(target, patch) : structuredClone(patch);
  if (!isObject(patch)) return structuredClone(patch);
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (strategic && k.startsWith('$')) continue;
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v, strategic);
  }
  return out;
}

function mergeList(target: unknown, patch: unknown[]): unknown[] {
  const keys = listKeys(patch);
  if (!keys || !Array.isArray(target)) return patch.filter((i) => !(isObject(i) && i.$patch === 'delete')).map((i) => mergePatch(undefined, i, true));
  const out = [...(target as unknown[])];
  for (const item of patch) {
    const idx = out.findIndex((t) => itemKey(t, keys) === itemKey(item, keys));
    if (isObject(item) && item.$patch === 'delete') {
      if (idx >= 0) out.splice(idx, 1);
    } else if (idx >= 0) out[idx] = mergePatch(out[idx], item, true);
    else out.push(mergePatch(undefined, item, true));
  }
  return out;
}

function pointer(path: unknown): string[] {
  if (typeof path !== 'string' || (path !== '' && !path.startsWith('/'))) throw badRequest(`invalid JSON pointer: ${JSON.stringify(path)}`);
  return path === '' ? [] : path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** The container holding the pointer's last step, and that step. */
function locate(doc: unknown, steps: string[]): { parent: unknown; key: string } {
  let cur = doc;
  for (const s of steps.slice(0, -1)) {
    cur = Array.isArray(cur) ? (cur as unknown[])[Number(s)] : isObject(cur) ? cur[s] : undefined;
    if (cur === undefined) throw new ApiError(422, 'Invalid', `the path /${steps.join('/')} does not exist`);
  }
  return { parent: cur, key: steps[steps.length - 1] ?? '' };
}

function read(doc: unknown, steps: string[]): unknown {
  if (steps.length === 0) return doc;
  const { parent, key } = locate(doc, steps);
  const v = Array.isArray(parent) ? (parent as unknown[])[Number(key)] : isObject(parent) ? parent[key] : undefined;
  if (v === undefined) throw new ApiError(422, 'Invalid', `the path /${steps.join('/')} does not exist`);
  return v;
}

function remove(doc: unknown, steps: string[]): unknown {
  const v = read(doc, steps);
  const { parent, key } = locate(doc, steps);
  if (Array.isArray(parent)) parent.splice(Number(key), 1);
  else if (isObject(parent)) delete parent[key];
  return v;
}

/** Returns the new document (the root may be replaced). */
function add(doc: unknown, steps: string[], value: unknown, replace: boolean): unknown {
  if (steps.length === 0) return value;
  if (replace) read(doc, steps);
  const { parent, key } = locate(doc, steps);
  if (Array.isArray(parent)) {
    const i = key === '-' ? parent.length : Number(key);
    if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new ApiError(422, 'Invalid', `index ${key} out of bounds`);
    parent.splice(i, replace ? 1 : 0, value);
  } else if (isObject(parent)) parent[key] = value;
  else throw new ApiError(422, 'Invalid', `the path /${steps.join('/')} does not exist`);
  return doc;
}

/** RFC 6902 operations applied in order to a copy of doc. */
export function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw badRequest('a JSON patch must be a list of operations');
  let out = structuredClone(doc);
  for (const op of ops as unknown[]) {
    if (!isObject(op)) throw badRequest('a JSON patch operation must be an object');
    const path = pointer(op.path);
    switch (op.op) {
      case 'add':
      case 'replace':
        out = add(out, path, structuredClone(op.value), op.op === 'replace');
        break;
      case 'remove':
        remove(out, path);
        break;
      case 'move':
        out = add(out, path, remove(out, pointer(op.from)), false);
        break;
      case 'copy':
        out = add(out, path, structuredClone(read(out, pointer(op.from))), false);
        break;
      case 'test':
        if (!deepEqual(read(out, path), op.value)) throw new ApiError(422, 'Invalid', `testing value ${String(op.path)} failed`);
        break;
      default:
        throw badRequest(`unexpected JSON patch operation ${JSON.stringify(op.op)}`);
    }
  }
  return out;
}
