// The workload controllers: Deployment → ReplicaSet → Pods, StatefulSet →
// ordinal Pods, Job → Pods run to completion; each step writes the status a
// real controller would (only when it changed).
import { createHash } from 'node:crypto';
import { canonical, deepEqual, guarded, listAt, now, numAt, objAt, strAt, stringMap, type JsonObject, type KubeObject } from './json';
import { PODS } from './kubelet';
import { randomSuffix, type Ops } from './ops';
import { apiVersionOf, mustKind, type Resource } from './resources';

const DEPLOYMENTS = mustKind('Deployment');
const REPLICASETS = mustKind('ReplicaSet');
const STATEFULSETS = mustKind('StatefulSet');
const JOBS = mustKind('Job');
const MANAGER = { manager: 'kube-controller-manager' };

/** pod-template-hash: ten characters from the template's content. */
function templateHash(template: unknown): string {
  const digest = createHash('sha256').update(canonical(template)).digest();
  return Array.from(digest.subarray(0, 10), (b) => 'bcdfghjklmnpqrstvwxz2456789'[b % 27]).join('');
}

const ownerRef = (res: Resource, owner: KubeObject): JsonObject => ({
  apiVersion: apiVersionOf(res),
  kind: res.kind,
  name: owner.metadata.name,
  uid: owner.metadata.uid,
  controller: true,
  blockOwnerDeletion: true,
});

/** Objects whose controller is owner, not being deleted. */
function owned(ops: Ops, res: Resource, owner: KubeObject): KubeObject[] {
  return ops.store
    .list(res, owner.metadata.namespace)
    .filter((o) => !o.metadata.deletionTimestamp && (o.metadata.ownerReferences ?? []).some((r) => r.uid === owner.metadata.uid && r.controller === true));
}

const isReady = (pod: KubeObject): boolean => listAt(pod, 'status', 'conditions').some((c) => strAt(c, 'type') === 'Ready' && strAt(c, 'status') === 'True');
const isDone = (pod: KubeObject): boolean => ['Succeeded', 'Failed'].includes(strAt(pod, 'status', 'phase') ?? '');

function createPod(ops: Ops, ownerRes: Resource, owner: KubeObject, name: string, labels: Record<string, string> = {}, spec: JsonObject = {}): void {
  const template = objAt(owner, 'spec', 'template');
  const annotations = Object.entries(stringMap(objAt(template, 'metadata', 'annotations')));
  ops.create(
    PODS,
    owner.metadata.namespace,
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: owner.metadata.namespace,
        labels: { ...stringMap(objAt(template, 'metadata', 'labels')), ...labels },
        ...(annotations.length > 0 ? { annotations: Object.fromEntries(annotations) } : {}),
        ownerReferences: [ownerRef(ownerRes, owner)],
      },
      spec: { ...structuredClone(objAt(template, 'spec')), ...spec },
    },
    MANAGER,
  );
}

/** Writes status through the status subresource when it differs; counters of 0 are left out, as the real API omits them. */
function setStatus(ops: Ops, res: Resource, obj: KubeObject, status: JsonObject): void {
  const clean = Object.fromEntries(Object.entries(status).filter(([, v]) => v !== 0 && v !== undefined));
  if (!deepEqual(clean, obj.status ?? {})) ops.update(res, obj.metadata.namespace, obj.metadata.name, { ...obj, status: clean }, { ...MANAGER, subresource: 'status' });
}

/** A condition that keeps its times while its status (transition) and reason (update) hold. */
function condition(old: unknown, type: string, ok: boolean, reason: string, message: string, updateTime: boolean): JsonObject {
  const prev = listAt(old, 'conditions').find((c) => strAt(c, 'type') === type);
  const status = ok ? 'True' : 'False';
  const t = now();
  const lastTransitionTime = strAt(prev, 'status') === status ? (strAt(prev, 'lastTransitionTime') ?? t) : t;
  const lastUpdateTime = strAt(prev, 'status') === status && strAt(prev, 'reason') === reason ? (strAt(prev, 'lastUpdateTime') ?? t) : t;
  return { type, status, ...(updateTime ? { lastUpdateTime } : { lastProbeTime: null }), lastTransitionTime, reason, message };
}

function sum(objs: KubeObject[], field: string): number {
  return objs.reduce((n, o) => n + (numAt(o, 'status', field) ?? 0), 0);
}

function deploymentStep(ops: Ops, dep: KubeObject): void {
  const replicas = numAt(dep, 'spec', 'replicas') ?? 1;
  const template = objAt(dep, 'spec', 'template');
  const hash = templateHash(template);
  const name = `${dep.metadata.name}-${hash}`;
  const ns = dep.metadata.namespace;
  let sets = owned(ops, REPLICASETS, dep);
  const revisionOf = (rs: KubeObject): number => Number(rs.metadata.annotations?.['deployment.kubernetes.io/revision'] ?? 0);
  let current = sets.find((rs) => rs.metadata.name === name);
  const revision = current ? revisionOf(current) : Math.max(0, ...sets.map(revisionOf)) + 1;
  const annotations = { 'deployment.kubernetes.io/desired-replicas': String(replicas), 'deployment.kubernetes.io/max-replicas': String(replicas + Math.ceil(replicas / 4)), 'deployment.kubernetes.io/revision': String(revision) };
  if (!current && !ops.store.get(REPLICASETS, ns, name)) {
    const labels = { ...stringMap(objAt(template, 'metadata', 'labels')), 'pod-template-hash': hash };
    const selector = objAt(dep, 'spec', 'selector');
    current = ops.create(
      REPLICASETS,
      ns,
      {
        apiVersion: 'apps/v1',
        kind: 'ReplicaSet',
        metadata: { name, namespace: ns, labels, annotations, ownerReferences: [ownerRef(DEPLOYMENTS, dep)] },
        spec: {
          replicas,
          minReadySeconds: numAt(dep, 'spec', 'minReadySeconds') ?? 0,
          selector: { ...selector, matchLabels: { ...stringMap(selector.matchLabels), 'pod-template-hash': hash } },
          template: { ...template, metadata: { ...objAt(template, 'metadata'), labels } },
        },
      },
      MANAGER,
    );
  } else if (current && (numAt(current, 'spec', 'replicas') !== replicas || !deepEqual(stringMap(current.metadata.annotations), { ...stringMap(current.metadata.annotations), ...annotations }))) {
    ops.update(REPLICASETS, ns, name, { ...current, metadata: { ...current.metadata, annotations: { ...current.metadata.annotations, ...annotations } }, spec: { ...objAt(current, 'spec'), replicas } }, MANAGER);
  }
  for (const rs of sets) if (rs.metadata.name !== name && numAt(rs, 'spec', 'replicas') !== 0) ops.scale(REPLICASETS, ns, rs.metadata.name, 0, MANAGER.manager);
  if (dep.metadata.annotations?.['deployment.kubernetes.io/revision'] !== String(revision)) {
    dep = ops.update(DEPLOYMENTS, ns, dep.metadata.name, { ...dep, metadata: { ...dep.metadata, annotations: { ...dep.metadata.annotations, 'deployment.kubernetes.io/revision': String(revision) } } }, MANAGER);
  }
  sets = owned(ops, REPLICASETS, dep);
  current = sets.find((rs) => rs.metadata.name === name);
  const total = sum(sets, 'replicas');
  const updated = current ? (numAt(current, 'status', 'replicas') ?? 0) : 0;
  const available = sum(sets, 'availableReplicas');
  const done = updated >= replicas && total === replicas && available >= replicas;
  const progressing = done
    ? condition(dep.status, 'Progressing', true, 'NewReplicaSetAvailable', `ReplicaSet "${name}" has successfully progressed.`, true)
    : condition(dep.status, 'Progressing', true, 'ReplicaSetUpdated', `ReplicaSet "${name}" is progressing.`, true);
  const availableCond =
    available >= replicas
      ? condition(dep.status, 'Available', true, 'MinimumReplicasAvailable', 'Deployment has minimum availability.', true)
      : condition(dep.status, 'Available', false, 'MinimumReplicasUnavailable', 'Deployment does not have minimum availability.', true);
  setStatus(ops, DEPLOYMENTS, dep, {
    observedGeneration: dep.metadata.generation,
    replicas: total,
    updatedReplicas: updated,
    readyReplicas: sum(sets, 'readyReplicas'),
    availableReplicas: available,
    unavailableReplicas: Math.max(0, replicas - available),
    conditions: [availableCond, progressing],
  });
}

function replicaSetStep(ops: Ops, rs: KubeObject): void {
  const replicas = numAt(rs, 'spec', 'replicas') ?? 1;
  const active = owned(ops, PODS, rs).filter((p) => !isDone(p));
  for (let i = active.length; i < replicas; i++) createPod(ops, REPLICASETS, rs, `${rs.metadata.name}-${randomSuffix()}`);
  // Not-ready and newest pods go first, as the real ReplicaSet controller picks them.
  const extra = [...active].sort((a, b) => Number(isReady(a)) - Number(isReady(b)) || b.metadata.creationTimestamp.localeCompare(a.metadata.creationTimestamp)).slice(0, Math.max(0, active.length - replicas));
  for (const p of extra) ops.delete(PODS, p.metadata.namespace, p.metadata.name, {});
  const pods = owned(ops, PODS, rs).filter((p) => !isDone(p));
  const ready = pods.filter(isReady).length;
  setStatus(ops, REPLICASETS, rs, { replicas: pods.length, fullyLabeledReplicas: pods.length, readyReplicas: ready, availableReplicas: ready, observedGeneration: rs.metadata.generation });
}

function statefulSetStep(ops: Ops, sts: KubeObject): void {
  const replicas = numAt(sts, 'spec', 'replicas') ?? 1;
  const ordered = strAt(sts, 'spec', 'podManagementPolicy') !== 'Parallel';
  const revision = `${sts.metadata.name}-${templateHash(objAt(sts, 'spec', 'template'))}`;
  const ns = sts.metadata.namespace;
  const pods = new Map(owned(ops, PODS, sts).map((p) => [Number(p.metadata.labels?.['apps.kubernetes.io/pod-index'] ?? -1), p]));
  const ordinals = [...pods.keys()].sort((a, b) => b - a);
  const allReady = [...pods.values()].every(isReady);
  // Scale down, then roll outdated pods, highest ordinal first; OrderedReady waits for the rest to be ready.
  const surplus = ordinals.filter((i) => i >= replicas);
  const outdated = ordinals.filter((i) => i < replicas && pods.get(i)?.metadata.labels?.['controller-revision-hash'] !== revision);
  const victims = surplus.length > 0 ? surplus : outdated;
  for (const i of ordered ? victims.slice(0, allReady ? 1 : 0) : victims) ops.delete(PODS, ns, `${sts.metadata.name}-${i}`, {});
  for (let i = 0; i < replicas; i++) {
    if (pods.has(i)) {
      if (ordered && !isReady(pods.get(i)!)) break;
      continue;
    }
    const name = `${sts.metadata.name}-${i}`;
    if (ops.store.get(PODS, ns, name)) break; // the old pod of this ordinal is still terminating
    const serviceName = strAt(sts, 'spec', 'serviceName');
    createPod(ops, STATEFULSETS, sts, name, { 'controller-revision-hash': revision, 'statefulset.kubernetes.io/pod-name': name, 'apps.kubernetes.io/pod-index': String(i) }, { hostname: name, ...(serviceName ? { subdomain: serviceName } : {}) });
    if (ordered) break;
  }
  const live = owned(ops, PODS, sts);
  const updated = live.filter((p) => p.metadata.labels?.['controller-revision-hash'] === revision).length;
  const ready = live.filter(isReady).length;
  const rolledOut = updated === replicas && ready === replicas && live.length === replicas;
  const currentRevision = rolledOut ? revision : (strAt(sts, 'status', 'currentRevision') ?? revision);
  setStatus(ops, STATEFULSETS, sts, {
    observedGeneration: sts.metadata.generation,
    replicas: live.length,
    readyReplicas: ready,
    currentReplicas: live.filter((p) => p.metadata.labels?.['controller-revision-hash'] === currentRevision).length,
    updatedReplicas: updated,
    availableReplicas: ready,
    currentRevision,
    updateRevision: revision,
    collisionCount: 0,
  });
}

function jobStep(ops: Ops, job: KubeObject): void {
  const old = objAt(job, 'status');
  const finished = listAt(old, 'conditions').some((c) => ['Complete', 'Failed'].includes(strAt(c, 'type') ?? '') && strAt(c, 'status') === 'True');
  if (finished || objAt(job, 'spec').suspend === true) return;
  const pods = owned(ops, PODS, job);
  const succeeded = pods.filter((p) => strAt(p, 'status', 'phase') === 'Succeeded').length;
  const failed = pods.filter((p) => strAt(p, 'status', 'phase') === 'Failed').length;
  let active = pods.filter((p) => !isDone(p));
  const completions = numAt(job, 'spec', 'completions') ?? 1;
  const t = now();
  const status: JsonObject = { startTime: strAt(old, 'startTime') ?? t, succeeded, failed, terminating: 0, uncountedTerminatedPods: {} };
  if (failed > (numAt(job, 'spec', 'backoffLimit') ?? 6)) {
    for (const p of active) ops.delete(PODS, p.metadata.namespace, p.metadata.name, {});
    active = [];
    const message = 'Job has reached the specified backoff limit';
    status.conditions = [condition(old, 'FailureTarget', true, 'BackoffLimitExceeded', message, false), condition(old, 'Failed', true, 'BackoffLimitExceeded', message, false)];
  } else if (succeeded >= completions) {
    const message = 'Reached expected number of succeeded pods';
    status.conditions = [condition(old, 'SuccessCriteriaMet', true, 'CompletionsReached', message, false), condition(old, 'Complete', true, 'CompletionsReached', message, false)];
    status.completionTime = t;
  } else {
    const parallelism = numAt(job, 'spec', 'parallelism') ?? 1;
    for (let n = active.length; n < parallelism && succeeded + n < completions; n++) createPod(ops, JOBS, job, `${job.metadata.name}-${randomSuffix()}`);
    active = owned(ops, PODS, job).filter((p) => !isDone(p));
  }
  setStatus(ops, JOBS, job, { ...status, active: active.length, ready: active.filter(isReady).length });
}

/** One step of every workload controller, bottom-up so a status change reaches the top in one step. */
export function workloadStep(ops: Ops): void {
  const steps: Array<[Resource, (ops: Ops, o: KubeObject) => void]> = [
    [JOBS, jobStep],
    [STATEFULSETS, statefulSetStep],
    [REPLICASETS, replicaSetStep],
    [DEPLOYMENTS, deploymentStep],
  ];
  for (const [res, step] of steps) for (const obj of ops.store.list(res)) if (!obj.metadata.deletionTimestamp) guarded(() => step(ops, obj));
}
