import { KubeLabel } from '@agent/option';
import { limits } from '../dimensions';
import type { Resources, WorkloadSpec } from '../types';
import { containersOf, parseManifest, WORKLOAD_TYPES, type K8sWorkload, type KubeObject, type WorkloadType } from './workload';

// From an object's spec to the manifest the agent applies, and back from
// the live object to the limits it has.

/** A Kubernetes label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends. */
export function labelValue(s: string): string {
  const v = s.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 63).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return v === '' ? 'x' : v;
}

/** The labels that mark the object's workload and its pods as this agent's. */
export function marks(objectId: string, hostId: string): Record<string, string> {
  return { [KubeLabel.ObjectId]: labelValue(objectId), [KubeLabel.HostId]: labelValue(hostId) };
}

/** The selector of every workload and pod of this host's agent. */
export function hostSelector(hostId: string): string {
  return `${KubeLabel.HostId}=${labelValue(hostId)}`;
}

/** "500m" for half a core. */
export const cpuQuantity = (cpus: number): string => `${Math.round(cpus * 1000)}m`;

const SUFFIX: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };

/** A Kubernetes quantity ("500m", "1Gi", "2", "1e3") as a number; undefined when it is none. */
export function parseQuantity(q: unknown): number | undefined {
  if (typeof q === 'number') return q;
  if (typeof q !== 'string') return undefined;
  const m = /^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)([a-zA-Z]*)$/.exec(q.trim());
  if (!m) return undefined;
  const scale = m[2] === '' ? 1 : SUFFIX[m[2] ?? ''];
  return scale === undefined ? undefined : Number(m[1]) * scale;
}

/**
 * The object as the agent applies it: the manifest, in the namespace chosen,
 * with the agent's marks on it and on its pods, and the object's limits as
 * every container's resources.limits (a limit not set leaves the manifest's).
 */
export function desired(spec: WorkloadSpec<K8sWorkload>, hostId: string, namespace: string): KubeObject {
  const obj = parseManifest(spec.workload.manifest, 'spec.k8s.manifest');
  const mark = marks(spec.objectId, hostId);
  obj.metadata = { ...obj.metadata, namespace, labels: { ...(obj.metadata.labels ?? {}), ...mark } };
  if (WORKLOAD_TYPES[obj.kind as WorkloadType].podTemplate) {
    const template = (obj.spec!.template ??= {}) as { metadata?: { labels?: Record<string, string> } };
    template.metadata = { ...(template.metadata ?? {}), labels: { ...(template.metadata?.labels ?? {}), ...mark } };
  }
  const { cpus, memoryBytes } = spec.resources;
  for (const c of containersOf(obj)) {
    if (cpus === 0 && memoryBytes === 0) break;
    const res = (c.resources ??= {}) as { limits?: Record<string, string> };
    res.limits = { ...(res.limits ?? {}), ...(cpus > 0 ? { cpu: cpuQuantity(cpus) } : {}), ...(memoryBytes > 0 ? { memory: String(memoryBytes) } : {}) };
  }
  return obj;
}

/** The limits a live workload has: its first container's cpu and memory limits (every container gets the object's). */
export function appliedLimits(obj: KubeObject): Resources {
  const first = containersOf(obj)[0] as { resources?: { limits?: Record<string, unknown> } } | undefined;
  const l = first?.resources?.limits ?? {};
  const cpus = parseQuantity(l.cpu);
  const memory = parseQuantity(l.memory);
  return limits({ cpus: cpus ? Math.round(cpus * 1000) / 1000 : 0, memoryBytes: memory ? Math.round(memory) : 0 });
}
