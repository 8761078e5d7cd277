import { DIMENSIONS, isMap, isNone, limits, sameValue, withFollowers, type DeviceLimits, type Dimension, type Phase, type ResourceChange, type Resources, type Runtime, type WorkloadSpec } from '@agent/drivers';
import { v1, type internalv1 } from '@agent/proto';
import { workloadOf } from './kinds';

// Between the API's messages and the drivers' own types (drivers never see generated code).

/** What the kind's driver is given to make (or find, or purge) the object. */
export function toWorkload(objectId: string, spec: v1.ObjectSpec): WorkloadSpec {
  const r = spec.resources;
  return {
    objectId,
    name: spec.name,
    labels: spec.labels,
    resources: toResources(r),
    workload: workloadOf(spec),
  };
}

type Value = Resources[keyof Resources];

/** In the API, what removes a limit in an Update: -1, or "-1" for a text dimension; for a map, -1 as one key's value removes that key's. */
export function removes(d: Dimension, v: Value | number | undefined): boolean {
  return typeof d.none === 'string' ? v === '-1' : v === -1;
}

/**
 * An Update's value laid over the current one: none keeps it, a removal
 * makes it none, anything else replaces it. A map does so key by key: the
 * keys it names are set or (-1) removed, the others keep theirs.
 */
function updated(d: Dimension, current: Value, req: Value | undefined): Value {
  if (isMap(d)) {
    const out: Record<string, number> = { ...(current as DeviceLimits) };
    for (const [k, v] of Object.entries((req ?? {}) as DeviceLimits)) {
      if (removes(d, v)) delete out[k];
      else out[k] = v;
    }
    return out;
  }
  return isNone(d, req) ? current : removes(d, req) ? d.none : (req as Value);
}

/** The API's limits as the drivers take them (every dimension, none where unset). */
export function toResources(r: v1.Resources | undefined): Resources {
  return limits(r ? Object.fromEntries(DIMENSIONS.map((d) => [d.key, r[d.key] ?? d.none])) : {});
}

/**
 * Public update semantics -> driver semantics: none (0, "", {}) keeps, -1 /
 * "-1" removes (none), anything else sets. A map named becomes the whole new
 * map, the update laid over current's (the object's limits now).
 */
export function toChange(r: v1.Resources | undefined, current: Resources): ResourceChange {
  const out: Record<string, Value> = {};
  for (const d of DIMENSIONS) {
    const v = r?.[d.key];
    if (!isNone(d, v)) out[d.key] = updated(d, current[d.key], v);
  }
  return out as ResourceChange;
}

/**
 * What an Update must still do to an object with these limits applied: the
 * fields that differ, in Update semantics (none keeps, -1 removes); a removal
 * of a limit it does not have, or a value it already has, is nothing to do.
 * A map keeps only the keys that change something. A value it already has
 * still goes where the rest of the change would move it (a swap total asked
 * as it is while memory changes: without it, it would follow memory).
 */
export function updateDiff(want: v1.Resources | undefined, applied: v1.Resources | undefined): v1.Resources {
  const out = v1.Resources.fromPartial({}) as unknown as Record<string, Value>;
  const now = toResources(applied);
  const changes = (d: Dimension, req: Value, from: Resources): boolean => !sameValue(d, updated(d, from[d.key], req), from[d.key]);
  for (const d of DIMENSIONS) {
    const req = want?.[d.key] ?? d.none;
    out[d.key] = isMap(d) ? Object.fromEntries(Object.entries(req as DeviceLimits).filter(([k, v]) => changes(d, { [k]: v }, now))) : changes(d, req, now) ? req : d.none;
  }
  const moved: Resources = { ...now, ...withFollowers(toChange(out as unknown as v1.Resources, now), now) };
  for (const d of DIMENSIONS) {
    const req = want?.[d.key] ?? d.none;
    if (!isMap(d) && changes(d, req, moved)) out[d.key] = req;
  }
  return out as unknown as v1.Resources;
}

/** Whether an Update's limits ask for anything. */
export function asksAny(r: v1.Resources | undefined): boolean {
  return r !== undefined && DIMENSIONS.some((d) => !isNone(d, r[d.key]));
}

/**
 * The object's spec limits after an Update: what it named replaces, what it
 * removed is none, a map changes only the keys named, and what follows from
 * the change moves with it (the swap total with memory).
 */
export function afterUpdate(spec: v1.Resources | undefined, want: v1.Resources | undefined): v1.Resources {
  const before = toResources(spec);
  return { ...before, ...withFollowers(toChange(want, before), before) };
}

const PHASE_STATE: Record<Phase, v1.State> = {
  pending: v1.State.STATE_PENDING,
  running: v1.State.STATE_RUNNING,
  stopped: v1.State.STATE_STOPPED,
  failed: v1.State.STATE_FAILED,
};

/** A driver's phase as the API's state; unspecified without one. */
export function phaseState(phase: Phase | undefined): v1.State {
  return phase ? PHASE_STATE[phase] : v1.State.STATE_UNSPECIFIED;
}

/** Where a workload stands, from what its driver said: its state when it says one, else running or stopped. */
export function stateOf(rt: { readonly running: boolean; readonly state?: v1.State }): v1.State {
  return rt.state ? rt.state : rt.running ? v1.State.STATE_RUNNING : v1.State.STATE_STOPPED;
}

export function toRuntimeInfo(rt: Runtime): internalv1.RuntimeInfo {
  return {
    runtimeId: rt.runtimeId,
    pid: rt.pid,
    cgroup: { version: rt.cgroup.version, paths: { ...rt.cgroup.paths } },
    applied: { ...rt.applied },
    running: rt.running,
    startTime: rt.startTime ?? 0,
    exitCode: rt.exitCode,
    ip: rt.ip ?? '',
    mac: rt.mac ?? '',
    state: phaseState(rt.phase),
    reason: rt.reason ?? '',
  };
}

export function fromRuntimeInfo(r: internalv1.RuntimeInfo): Runtime {
  return {
    runtimeId: r.runtimeId,
    pid: r.pid,
    cgroup: { version: r.cgroup?.version === 'v2' ? 'v2' : 'v1', paths: { ...(r.cgroup?.paths ?? {}) } },
    applied: toResources(r.applied),
    running: r.running,
    startTime: r.startTime || undefined,
    exitCode: r.exitCode,
    ip: r.ip || undefined,
    mac: r.mac || undefined,
    phase: (Object.keys(PHASE_STATE) as Phase[]).find((p) => PHASE_STATE[p] === r.state),
    reason: r.reason || undefined,
  };
}
