// Label and field selectors, in the query syntax and as LabelSelector objects.
import { badRequest, isObject, listAt, stringMap, strAt, type KubeObject } from './json';

type Op = 'in' | 'notin' | 'exists' | '!exists' | '=' | '!=';
interface Requirement {
  readonly key: string;
  readonly op: Op;
  readonly values: readonly string[];
}

export type Selector = (obj: KubeObject) => boolean;

/** Splits on commas outside parentheses: "a in (x,y),b" → ["a in (x,y)", "b"]. */
function splitTop(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}

function parseRequirement(text: string): Requirement {
  const set = /^([^\s!=()]+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(text);
  if (set) return { key: set[1]!, op: set[2] as Op, values: set[3]!.split(',').map((v) => v.trim()) };
  const cmp = /^([^\s!=()]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(text);
  if (cmp) return { key: cmp[1]!, op: cmp[2] === '!=' ? '!=' : '=', values: [cmp[3]!] };
  const not = /^!\s*([^\s!=()]+)$/.exec(text);
  if (not) return { key: not[1]!, op: '!exists', values: [] };
  if (/^[^\s!=()]+$/.test(text)) return { key: text, op: 'exists', values: [] };
  throw badRequest(`unable to parse requirement: ${JSON.stringify(text)}`);
}

function matches(reqs: readonly Requirement[], labels: Record<string, string>): boolean {
  return reqs.every(({ key, op, values }) => {
    const v = labels[key];
    switch (op) {
      case 'exists':
        return v !== undefined;
      case '!exists':
        return v === undefined;
      case '=':
      case 'in':
        return v !== undefined && values.includes(v);
      case '!=':
      case 'notin':
        return v === undefined || !values.includes(v);
    }
  });
}

/** A labelSelector query parameter; an empty one matches everything. */
export function labelSelector(query: string | null): Selector {
  const reqs = splitTop(query ?? '').map(parseRequirement);
  return (obj) => matches(reqs, obj.metadata.labels ?? {});
}

/** Whether labels satisfy a LabelSelector object (matchLabels and matchExpressions). */
export function selectorMatches(selector: unknown, labels: Record<string, string>): boolean {
  if (!isObject(selector)) return false;
  const reqs: Requirement[] = Object.entries(stringMap(selector.matchLabels)).map(([key, v]) => ({ key, op: '=', values: [v] }));
  for (const e of listAt(selector, 'matchExpressions')) {
    const key = strAt(e, 'key') ?? '';
    const op = { In: 'in', NotIn: 'notin', Exists: 'exists', DoesNotExist: '!exists' }[strAt(e, 'operator') ?? ''] as Op | undefined;
    if (op) reqs.push({ key, op, values: listAt(e, 'values').filter((v): v is string => typeof v === 'string') });
  }
  return reqs.length > 0 && matches(reqs, labels);
}

/** "app=x,tier!=db" for a LabelSelector object, as Scale status shows it. */
export function selectorText(selector: unknown): string {
  return Object.entries(stringMap(isObject(selector) ? selector.matchLabels : undefined))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** Fields each kind can be selected on, as the real apiserver allows them. */
const FIELDS: Record<string, Record<string, (o: KubeObject) => string>> = {
  '*': { 'metadata.name': (o) => o.metadata.name, 'metadata.namespace': (o) => o.metadata.namespace ?? '' },
  Pod: {
    'spec.nodeName': (o) => strAt(o, 'spec', 'nodeName') ?? '',
    'status.phase': (o) => strAt(o, 'status', 'phase') ?? '',
    'spec.restartPolicy': (o) => strAt(o, 'spec', 'restartPolicy') ?? '',
  },
  Secret: { type: (o) => strAt(o, 'type') ?? '' },
  Event: { 'involvedObject.name': (o) => strAt(o, 'involvedObject', 'name') ?? '' },
};

/** A fieldSelector query parameter for a kind; unknown fields are a 400, as for real. */
export function fieldSelector(query: string | null, kind: string): Selector {
  const tests = splitTop(query ?? '').map((text) => {
    const m = /^([^!=]+?)\s*(==|=|!=)\s*(.*)$/.exec(text);
    if (!m) throw badRequest(`invalid selector: '${query}'; can't understand '${text}'`);
    const get = FIELDS['*']![m[1]!] ?? FIELDS[kind]?.[m[1]!];
    if (!get) throw badRequest(`field label not supported: ${m[1]}`);
    const want = m[3]!;
    return m[2] === '!=' ? (o: KubeObject) => get(o) !== want : (o: KubeObject) => get(o) === want;
  });
  return (obj) => tests.every((t) => t(obj));
}
