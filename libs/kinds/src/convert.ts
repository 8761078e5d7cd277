import type { ResourceChange, Runtime, WorkloadSpec } from '@agent/drivers';
import type { internalv1, v1 } from '@agent/proto';
import { workloadOf } from './kinds';

// Between the API's messages and the drivers' own types (drivers never see generated code).

/** What the kind's driver is given to make (or find, or purge) the object. */
export function toWorkload(objectId: string, spec: v1.ObjectSpec): WorkloadSpec {
  const r = spec.resources;
  return {
    objectId,
    name: spec.name,
    labels: spec.labels,
    resources: { cpus: r?.cpus ?? 0, memoryBytes: r?.memoryBytes ?? 0, pidsLimit: r?.pidsLimit ?? 0 },
    workload: workloadOf(spec),
  };
}

/** Public update semantics -> driver semantics: 0 keeps, -1 removes (0), > 0 sets. */
export function toChange(r: v1.Resources | undefined): ResourceChange {
  const f = (v: number | undefined): number | undefined => (v === undefined || v === 0 ? undefined : v < 0 ? 0 : v);
  return { cpus: f(r?.cpus), memoryBytes: f(r?.memoryBytes), pidsLimit: f(r?.pidsLimit) };
}

export function toRuntimeInfo(rt: Runtime): internalv1.RuntimeInfo {
  return { runtimeId: rt.runtimeId, pid: rt.pid, cgroup: { version: rt.cgroup.version, paths: { ...rt.cgroup.paths } }, applied: { ...rt.applied }, running: rt.running, startTime: rt.startTime ?? 0, exitCode: rt.exitCode, ip: rt.ip ?? '', mac: rt.mac ?? '' };
}

export function fromRuntimeInfo(r: internalv1.RuntimeInfo): Runtime {
  return {
    runtimeId: r.runtimeId,
    pid: r.pid,
    cgroup: { version: r.cgroup?.version === 'v2' ? 'v2' : 'v1', paths: { ...(r.cgroup?.paths ?? {}) } },
    applied: { cpus: r.applied?.cpus ?? 0, memoryBytes: r.applied?.memoryBytes ?? 0, pidsLimit: r.applied?.pidsLimit ?? 0 },
    running: r.running,
    startTime: r.startTime || undefined,
    exitCode: r.exitCode,
    ip: r.ip || undefined,
    mac: r.mac || undefined,
  };
}
