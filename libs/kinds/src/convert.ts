import { DIMENSIONS, limits, type Dimension, type Phase, type ResourceChange, type Resources, type Runtime, type WorkloadSpec } from '@agent/drivers';
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

/** In the API, what removes a limit in an Update: -1, or "-1" for a text dimension. */
export function removes(d: Dimension, v: Value | undefined): boolean {
  return typeof d.none === 'number' ? v === -1 : v === '-1';
}

/** The API's limits as the drivers take them (every dimension, none where unset). */
export function toResources(r: v1.Resources | undefined): Resources {
  return limits(r ? Object.fromEntries(DIMENSIONS.map((d) => [d.key, r[d.key] ?? d.none])) : {});
}

/** Public update semantics -> driver semantics: none (0, "") keeps, -1 / "-1" removes (none), anything else sets. */
export function toChange(r: v1.Resources | undefined): ResourceChange {
  const out: Record<string, Value> = {};
  for (const d of DIMENSIONS) {
    const v = r?.[d.key];
    if (v === undefined || v === d.none) continue;
    out[d.key] = removes(d, v) ? d.none : v;
  }
  return out as ResourceChange;
}

/**
 * What an Update must still do to an object with these limits applied: the
 * fields that differ, in Update semantics (none keeps, -1 removes); a removal
 * of a limit it does not have, or a value it already has, is nothing to do.
 */
export function updateDiff(want: v1.Resources | undefined, applied: v1.Resources | undefined): v1.Resources {
  const out = v1.Resources.fromPartial({}) as unknown as Record<string, Value>;
  for (const d of DIMENSIONS) {
    const req = want?.[d.key] ?? d.none;
    const cur = applied?.[d.key] ?? d.none;
    out[d.key] = req === d.none || req === cur || (removes(d, req) && cur === d.none) ? d.none : req;
  }
  return out as unknown as v1.Resources;
}

/** Whether an Update's limits ask for anything. */
export function asksAny(r: v1.Resources | undefined): boolean {
  return r !== undefined && DIMENSIONS.some((d) => r[d.key] !== d.none);
}

/** The object's spec limits after an Update: what it named replaces, what it removed is none. */
export function afterUpdate(spec: v1.Resources | undefined, want: v1.Resources | undefined): v1.Resources {
  return { ...toResources(spec), ...toChange(want) };
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
