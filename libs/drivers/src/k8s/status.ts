import type { Phase } from '../types';
import type { KubeObject } from './workload';

// Where a Kubernetes workload stands, from its status and its pods'. The
// agent's four states: RUNNING when it is what was asked (rolled out and
// available, pods ready), PENDING while it gets there (a reason says what
// it waits on: "ContainerCreating", "ImagePullBackOff", "CrashLoopBackOff"),
// STOPPED when it ended by itself (a Job complete, a Pod succeeded, scaled to
// zero), FAILED when Kubernetes gave up (a Job failed, a Pod failed).

export interface Standing {
  readonly phase: Phase;
  readonly reason: string;
  readonly exitCode?: number;
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : {});
const list = (v: unknown): Json[] => (Array.isArray(v) ? v.map(obj) : []);
const int = (v: unknown): number => (typeof v === 'number' ? v : 0);

function condition(o: KubeObject, type: string): Json | undefined {
  return list(obj(o.status).conditions).find((c) => c.type === type);
}
const isTrue = (c: Json | undefined): boolean => c?.status === 'True';

/** Why pods are not ready: the first waiting reason that is not just creation, else the first. */
function waitingReason(pods: readonly KubeObject[]): string | undefined {
  const reasons: string[] = [];
  for (const p of pods) {
    for (const s of list(obj(p.status).containerStatuses)) {
      const r = obj(obj(s.state).waiting).reason;
      if (typeof r === 'string') reasons.push(r);
    }
  }
  return reasons.find((r) => r !== 'ContainerCreating' && r !== 'PodInitializing') ?? reasons[0];
}

/** A terminated container's exit code, first found. */
function exitCodeOf(pod: KubeObject): number | undefined {
  for (const s of list(obj(pod.status).containerStatuses)) {
    const t = obj(obj(s.state).terminated);
    if (typeof t.exitCode === 'number') return t.exitCode;
  }
  return undefined;
}

const pending = (pods: readonly KubeObject[], fallback: string): Standing => ({ phase: 'pending', reason: waitingReason(pods) ?? fallback });

export function standingOf(o: KubeObject, pods: readonly KubeObject[]): Standing {
  const spec = obj(o.spec);
  const status = obj(o.status);
  const meta = o.metadata as { generation?: number; deletionTimestamp?: string };
  if (meta.deletionTimestamp) return { phase: 'pending', reason: 'being deleted' };
  const observed = int(status.observedGeneration) >= int(meta.generation);
  switch (o.kind) {
    case 'Deployment':
    case 'StatefulSet': {
      const want = typeof spec.replicas === 'number' ? spec.replicas : 1;
      if (want === 0) return observed && int(status.replicas) === 0 ? { phase: 'stopped', reason: 'scaled to 0' } : { phase: 'pending', reason: 'scaling to 0' };
      const ready = int(status.readyReplicas);
      const updated = int(status.updatedReplicas);
      const available = o.kind === 'Deployment' ? isTrue(condition(o, 'Available')) && int(status.availableReplicas) >= want : ready >= want;
      if (observed && available && updated >= want && int(status.replicas) === want) return { phase: 'running', reason: '' };
      const progress = condition(o, 'Progressing');
      if (progress?.status === 'False' && typeof progress.reason === 'string') return pending(pods, progress.reason);
      return pending(pods, `${ready}/${want} ready`);
    }
    case 'Job': {
      if (isTrue(condition(o, 'Complete'))) return { phase: 'stopped', reason: 'complete', exitCode: 0 };
      const failed = condition(o, 'Failed');
      if (isTrue(failed)) return { phase: 'failed', reason: typeof failed?.reason === 'string' ? failed.reason : 'failed', exitCode: pods.map(exitCodeOf).find((c) => c !== undefined && c !== 0) };
      if (pods.some((p) => obj(p.status).phase === 'Running')) return { phase: 'running', reason: '' };
      return pending(pods, 'starting');
    }
    default: {
      const phase = status.phase;
      if (phase === 'Running' && isTrue(condition(o, 'Ready'))) return { phase: 'running', reason: '' };
      if (phase === 'Succeeded') return { phase: 'stopped', reason: 'succeeded', exitCode: 0 };
      if (phase === 'Failed') {
        const code = exitCodeOf(o);
        return { phase: 'failed', reason: typeof status.reason === 'string' ? status.reason : code !== undefined ? `exited with code ${code}` : 'failed', exitCode: code };
      }
      return pending([o], typeof phase === 'string' ? phase : 'Pending');
    }
  }
}
