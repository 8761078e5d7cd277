import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CgroupFs } from '../cgroup-fs';
import type { Sampler } from '../driver';
import { FigureReader } from '../figure-reader';
import { netDevPath } from '../proc-figures';
import type { Figures } from '../types';
import type { KubeObject } from './workload';

// Figures of a k8s object: the sum over its pods that run on this node, read
// from the cgroups kubelet made for them by the same readers as every other
// object. Pods elsewhere (or a kubelet layout not found) give no figures:
// unset, never invented.

const QOS = ['', 'burstable', 'besteffort'] as const;

/** Where kubelet puts a pod's cgroup, below the hierarchy's root: its cgroupfs and systemd layouts, by QoS class. */
export function podCgroupCandidates(uid: string): string[] {
  const u = uid.replace(/-/g, '_');
  return QOS.flatMap((q) => [
    q === '' ? `kubepods/pod${uid}` : `kubepods/${q}/pod${uid}`,
    q === '' ? `kubepods.slice/kubepods-pod${u}.slice` : `kubepods.slice/kubepods-${q}.slice/kubepods-${q}-pod${u}.slice`,
  ]);
}

/** The pod's cgroup on this host, or undefined. */
function podCgroup(cgroups: CgroupFs, uid: string): ReturnType<CgroupFs['refAt']> | undefined {
  for (const rel of podCgroupCandidates(uid)) {
    const ref = cgroups.refAt(rel);
    const probe = ref.paths.unified ?? ref.paths.memory ?? ref.paths.cpuacct;
    if (probe && fs.existsSync(probe)) return ref;
  }
  return undefined;
}

/** A process of the pod, whose network namespace is the pod's. */
function firstPid(dir: string | undefined): number {
  if (!dir) return 0;
  try {
    return Number(fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')[0]) || 0;
  } catch {
    return 0;
  }
}

const FIELDS = ['cpuUsageNs', 'memoryUsageBytes', 'memoryLimitBytes', 'pids', 'netRxBytes', 'netTxBytes', 'blkioReadBytes', 'blkioWriteBytes', 'cpuThrottledPeriods', 'cpuThrottledNs', 'memoryHighEvents', 'memoryWorkingSetBytes'] as const;

/**
 * Figures added up: a figure no part has stays unset. CPU quotas add up when
 * every part has one over the same period (otherwise the sum has no quota).
 */
export function sumFigures(parts: readonly Figures[]): Figures {
  const out: Record<string, number> = {};
  for (const f of parts) {
    for (const k of FIELDS) {
      const v = f[k];
      if (v !== undefined) out[k] = (out[k] ?? 0) + v;
    }
  }
  const period = parts[0]?.cpuPeriodUs;
  if (period !== undefined && parts.every((p) => p.cpuQuotaUs !== undefined && p.cpuPeriodUs === period)) {
    out.cpuQuotaUs = parts.reduce((sum, p) => sum + (p.cpuQuotaUs ?? 0), 0);
    out.cpuPeriodUs = period;
  }
  return out as Figures;
}

/**
 * Reads the object's pods on this node: which pods those are is asked again
 * on each read (pods come and go); each pod's files stay open while it lives.
 */
export class PodSampler implements Sampler {
  private readonly readers = new Map<string, FigureReader>();

  constructor(
    private readonly cgroups: CgroupFs,
    private readonly pods: () => readonly KubeObject[],
    private readonly nodeName: string,
  ) {}

  read(): Figures {
    const live = new Set<string>();
    const parts: Figures[] = [];
    for (const pod of this.pods()) {
      const uid = (pod.metadata as { uid?: string }).uid;
      if (!uid || (pod.spec as { nodeName?: string } | undefined)?.nodeName?.toLowerCase() !== this.nodeName) continue;
      live.add(uid);
      let reader = this.readers.get(uid);
      if (reader === undefined) {
        const ref = podCgroup(this.cgroups, uid);
        if (ref) {
          reader = new FigureReader(ref, netDevPath(firstPid(ref.paths.unified ?? ref.paths.pids ?? ref.paths.memory)));
          this.readers.set(uid, reader);
        }
      }
      if (reader) parts.push(reader.read());
    }
    for (const [uid, reader] of this.readers) {
      if (live.has(uid)) continue;
      reader.close();
      this.readers.delete(uid);
    }
    return parts.length === 0 ? {} : sumFigures(parts);
  }

  close(): void {
    for (const r of this.readers.values()) r.close();
    this.readers.clear();
  }
}
