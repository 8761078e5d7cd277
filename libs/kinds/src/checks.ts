import type { AgentConfig } from '@agent/option';
import { FailedPreconditionError, InvalidArgumentError } from '@agent/grpc-kit';
import type { Limit } from '@agent/drivers';
import { v1 } from '@agent/proto';
import { KINDS, kindRow, type KindRow } from './kinds';

/** A limit's field name in the API. */
const LIMIT_FIELDS: Readonly<Record<Limit, string>> = { cpus: 'cpus', memoryBytes: 'memory_bytes', pidsLimit: 'pids_limit' };

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
  const lacking = limitsAsked(resources, (v) => v > 0).find((l) => !row.capabilities.limits[l]);
  if (lacking) throw new InvalidArgumentError(`spec.resources.${LIMIT_FIELDS[lacking]}`, `${v1.Kind[row.kind]} objects cannot be limited by ${LIMIT_FIELDS[lacking]}`);
}

/** Host checks of the kind (who runs a process, which executables are allowed); the spec comes back with defaults filled in. */
export function admitWorkload(spec: v1.ObjectSpec, config: AgentConfig): v1.ObjectSpec {
  const row = kindRow(spec.kind);
  const workload = spec[row.field];
  if (!row.admit || workload === undefined) return spec;
  return { ...spec, [row.field]: row.admit(workload, config) };
}

/**
 * An Update the object's driver cannot do is refused before any call:
 * FAILED_PRECONDITION naming the field (the request is well formed, the
 * object's kind cannot take it). A limit being removed (-1) or set counts.
 */
export function checkUpdate(row: KindRow, resources: v1.Resources | undefined): void {
  const lacking = limitsAsked(resources, (v) => v !== 0).find((l) => !row.capabilities.limits[l]);
  if (lacking) throw new FailedPreconditionError(`resources.${LIMIT_FIELDS[lacking]}: ${v1.Kind[row.kind]} objects cannot be limited by ${LIMIT_FIELDS[lacking]}`);
}

/** What a reader sees of a spec: the kind's secrets hidden. */
export function redactWorkload(spec: v1.ObjectSpec): v1.ObjectSpec {
  const row = KINDS.find((r) => r.kind === spec.kind);
  const workload = row ? spec[row.field] : undefined;
  if (!row?.redact || workload === undefined) return spec;
  return { ...spec, [row.field]: row.redact(workload) };
}

function limitsAsked(r: v1.Resources | undefined, asked: (v: number) => boolean): Limit[] {
  if (!r) return [];
  return (Object.keys(LIMIT_FIELDS) as Limit[]).filter((l) => asked(r[l]));
}
