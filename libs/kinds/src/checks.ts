import type { AgentConfig } from '@agent/option';
import { FailedPreconditionError, InvalidArgumentError } from '@agent/grpc-kit';
import { DIMENSIONS, isMap, isNone, mismatch, type DeviceLimits, type Dimension } from '@agent/drivers';
import { v1 } from '@agent/proto';
import { afterUpdate, removes, toResources } from './convert';
import { findKind, KINDS, kindRow, type ChangeField, type KindRow } from './kinds';

/**
 * The kind's checks of a spec to create: its kind is known, exactly its own
 * case is set, that case passes the kind's validator, and only limits the
 * kind's driver can set are asked for. Each failure names the field.
 */
export function validateWorkload(spec: v1.ObjectSpec): void {
  const row = kindRow(spec.kind);
  const kind = v1.Kind[spec.kind];
  for (const other of KINDS) {
    if (other.field !== row.field && spec[other.field] !== undefined) throw new InvalidArgumentError(`spec.${other.field}`, `must not be set for ${kind}`);
  }
  const workload = spec[row.field];
  if (workload === undefined) throw new InvalidArgumentError(`spec.${row.field}`, `required for ${kind}`);
  row.validate(workload, `spec.${row.field}`);
  checkCreateLimits(row, spec.resources);
}

/** A create asking for a limit the kind's driver cannot set: INVALID_ARGUMENT naming it (the kind is in the request). */
export function checkCreateLimits(row: KindRow, resources: v1.Resources | undefined): void {
  const lacking = lacks(row, resources);
  if (lacking) throw new InvalidArgumentError(`spec.resources.${lacking.field}`, `${v1.Kind[row.kind]} objects cannot be limited by ${lacking.field}`);
}

/** Host checks of the kind (who runs a process, which executables are allowed); the spec comes back with defaults filled in. */
export function admitWorkload(spec: v1.ObjectSpec, config: AgentConfig): v1.ObjectSpec {
  const row = kindRow(spec.kind);
  const workload = spec[row.field];
  if (!row.admit || workload === undefined) return spec;
  return { ...spec, [row.field]: row.admit(workload, config) };
}

/**
 * An Update the object cannot take is refused before any call:
 * FAILED_PRECONDITION naming the field (the request is well formed, the
 * object is not in a state for it): a limit its kind's driver cannot set
 * (being removed (-1) or set counts), or limits that would not go together
 * once laid over the ones recorded for it (a swap total below memory).
 */
export function checkUpdate(row: KindRow, resources: v1.Resources | undefined, recorded: v1.Resources | undefined): void {
  const lacking = lacks(row, resources);
  if (lacking) throw new FailedPreconditionError(`resources.${lacking.field}: ${v1.Kind[row.kind]} objects cannot be limited by ${lacking.field}`);
  const bad = mismatch(toResources(afterUpdate(recorded, resources)));
  if (bad) throw new FailedPreconditionError(`resources.${bad.dimension.field}: ${bad.why}`);
}

/**
 * A limit asked for (set or removed) that this host cannot give the object's
 * kind (lacking: API field -> why, as its driver says): FAILED_PRECONDITION
 * naming field.<dimension>. The request is well formed; the host is not one
 * that can do it.
 */
export function checkHostLimits(lacking: Readonly<Record<string, string>>, field: string, r: v1.Resources | undefined): void {
  const d = r ? DIMENSIONS.find((x) => !isNone(x, r[x.key]) && lacking[x.field] !== undefined) : undefined;
  if (d) throw new FailedPreconditionError(`${field}.${d.field}: ${lacking[d.field]}`);
}

/**
 * The limits of a request, each checked by its dimension's row: none (0, "",
 * {}) means no limit at create and keeps the field at update, -1 ("-1")
 * removes it at update and is an error at create, and anything else must be
 * within the row's bounds; a map's keys and values are checked one by one
 * (field.<dimension>["key"]). At create the limits must also go together (a
 * swap total needs memory); an update is checked so against the object's
 * own in checkUpdate. Each failure names field.<dimension>.
 */
export function checkResources(field: string, r: v1.Resources | undefined, update: boolean): void {
  if (!r) return;
  for (const d of DIMENSIONS) {
    const v = r[d.key];
    if (isNone(d, v)) continue;
    if (!isMap(d)) {
      checkValue(d, `${field}.${d.field}`, v, update);
      continue;
    }
    const why = d.check(v);
    if (why) throw new InvalidArgumentError(`${field}.${d.field}`, why);
    for (const [k, n] of Object.entries(v as DeviceLimits)) checkValue(d, `${field}.${d.field}[${JSON.stringify(k)}]`, n, update, d.entries?.key(k));
  }
  const bad = update ? undefined : mismatch(toResources(r));
  if (bad) throw new InvalidArgumentError(`${field}.${bad.dimension.field}`, bad.why);
}

/** One value (or one key's value of a map): a removal only in an Update, else within the row's bounds. */
function checkValue(d: Dimension, field: string, v: unknown, update: boolean, keyWrong?: string): void {
  if (keyWrong) throw new InvalidArgumentError(field, keyWrong);
  if (update && removes(d, v as number)) return;
  const hint = isMap(d) ? (update ? ' (-1 removes this one, leaving it out keeps it)' : ' (leave it out for no limit)') : update ? ' (-1 removes the limit, 0 keeps it)' : ' (0 means no limit)';
  if (typeof v === 'number' && v < 0) throw new InvalidArgumentError(field, `must not be negative${hint}`);
  if (v === '-1') throw new InvalidArgumentError(field, `"-1" removes a limit in an Update; at create leave it empty`);
  const why = isMap(d) ? d.entries?.value(v as number) : d.check(v as never);
  if (why) throw new InvalidArgumentError(field, why);
}

/** What a reader sees of a spec: the kind's secrets hidden. */
export function redactWorkload(spec: v1.ObjectSpec): v1.ObjectSpec {
  const row = findKind(spec.kind);
  const workload = row ? spec[row.field] : undefined;
  if (!row?.redact || workload === undefined) return spec;
  return { ...spec, [row.field]: row.redact(workload) };
}

/** The first dimension asked for (set or removed) that the kind's driver cannot set. */
function lacks(row: KindRow, r: v1.Resources | undefined): Dimension | undefined {
  return r ? DIMENSIONS.find((d) => !isNone(d, r[d.key]) && !row.capabilities.limits[d.key]) : undefined;
}

/** The UpdateRequest cases of every kind that has one. */
const CHANGE_FIELDS: readonly ChangeField[] = KINDS.flatMap((r) => (r.change ? [r.change.field] : []));

/** Whether an Update asks a kind's own changes (any UpdateRequest case). */
export function asksChange(u: v1.UpdateRequest): boolean {
  return CHANGE_FIELDS.some((f) => u[f] !== undefined);
}

/** The UpdateRequest cases there are, for messages. */
export function changeFields(): string {
  return CHANGE_FIELDS.join(', ');
}

/**
 * The object's spec after an Update's own changes (the UpdateRequest case of
 * its kind), or undefined when the request asks none. A case of another
 * kind is INVALID_ARGUMENT naming it; a bad change names its field.
 */
export function changedSpec(spec: v1.ObjectSpec, u: v1.UpdateRequest): v1.ObjectSpec | undefined {
  const row = kindRow(spec.kind);
  let asked: ChangeField | undefined;
  for (const f of CHANGE_FIELDS) {
    if (u[f] === undefined) continue;
    if (f !== row.change?.field) throw new InvalidArgumentError(f, `${v1.Kind[row.kind]} objects take no ${f} changes`);
    asked = f;
  }
  const change = asked ? u[asked] : undefined;
  const workload = spec[row.field];
  if (!row.change || change === undefined || workload === undefined) return undefined;
  return { ...spec, [row.field]: row.change.apply(workload, change, row.change.field) };
}
