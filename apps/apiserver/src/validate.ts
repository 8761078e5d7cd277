import { fail, maxLen } from '@agent/drivers';
import { asksAny, asksChange, changeFields, checkResources, kindRow, validateWorkload } from '@agent/kinds';
import { v1 } from '@agent/proto';

// Syntax checks of the public API. Each failure names the field, so that a
// user sees which part of the request to fix. State checks (unknown ids,
// names in use, deleted objects) are agentcore's.

export const LIMITS = {
  nameLength: 63,
  idLength: 64,
  requestIdLength: 128,
  labels: 64,
  labelKeyLength: 63,
  labelValueLength: 255,
  maxIntervalMs: 3_600_000,
} as const;

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const LABEL_KEY_RE = /^[a-zA-Z0-9]([a-zA-Z0-9_./-]*[a-zA-Z0-9])?$/;


export function checkObjectId(field: string, id: string): void {
  if (id === '') fail(field, 'required');
  maxLen(field, id, LIMITS.idLength);
}

export function checkLabels(field: string, labels: Record<string, string>): void {
  const entries = Object.entries(labels);
  if (entries.length > LIMITS.labels) fail(field, `more than ${LIMITS.labels} labels`);
  for (const [k, v] of entries) {
    if (k.length > LIMITS.labelKeyLength || !LABEL_KEY_RE.test(k)) fail(`${field}[${JSON.stringify(k)}]`, `key must be 1-${LIMITS.labelKeyLength} characters of letters, digits, "_", ".", "/", "-"`);
    if (k.startsWith('io.agent.')) fail(`${field}[${JSON.stringify(k)}]`, 'the io.agent. prefix is reserved for the agent');
    maxLen(`${field}[${JSON.stringify(k)}]`, v, LIMITS.labelValueLength);
  }
}

export function validateCreate(req: v1.CreateRequest): void {
  maxLen('request_id', req.requestId, LIMITS.requestIdLength);
  const s = req.spec;
  if (!s) fail('spec', 'required');
  if (s.name === '') fail('spec.name', 'required');
  if (s.name.length > LIMITS.nameLength || !NAME_RE.test(s.name)) {
    fail('spec.name', `must be 1-${LIMITS.nameLength} characters of letters, digits, "_", ".", "-", starting with a letter or digit`);
  }
  kindRow(s.kind);
  checkLabels('spec.labels', s.labels);
  checkResources('spec.resources', s.resources, false);
  // The kind's own checks: its case of the spec, and the limits its driver can set.
  validateWorkload(s);
}

export function validateUpdate(req: v1.UpdateRequest): void {
  checkObjectId('object_id', req.objectId);
  checkResources('resources', req.resources, true);
  checkLabels('labels', req.labels);
  if (!asksAny(req.resources) && Object.keys(req.labels).length === 0 && !asksChange(req)) fail('resources', `nothing to update: set resources, labels or a kind's own changes (${changeFields()})`);
}

export function validatePushOn(req: v1.PushOnRequest, minIntervalMs: number): void {
  checkObjectId('object_id', req.objectId);
  if (req.intervalMs <= 0) fail('interval_ms', 'required and positive');
  if (req.intervalMs < minIntervalMs) fail('interval_ms', `at least ${minIntervalMs} ms`);
  if (req.intervalMs > LIMITS.maxIntervalMs) fail('interval_ms', `at most ${LIMITS.maxIntervalMs} ms (1 h)`);
}

export function validateList(req: v1.ListRequest): void {
  if (!(req.kind in v1.Kind) || req.kind === v1.Kind.UNRECOGNIZED) fail('kind', `unknown kind ${req.kind}`);
  checkLabels('labels', req.labels);
  if (req.pageSize < 0) fail('page_size', 'must not be negative');
  maxLen('page_token', req.pageToken, 256);
}
