// The scheduler and the one node's kubelet: binds pods to the node, then
// moves each pod one phase per step. Images tell it how a pod fares:
// "missing" never pulls, "crash" crash-loops, "fail" exits 1; pods that do
// not restart (Jobs', hooks') run to completion after one step.
import { createHash } from 'node:crypto';
import type { IpPool } from './defaults';
import { deepEqual, listAt, now, objAt, strAt, type JsonObject, type KubeObject } from './json';
import type { Ops } from './ops';
import { mustKind } from './resources';

export const PODS = mustKind('Pod');
/** The node's address, shown as each pod's hostIP. */
export const NODE_IP = '10.0.0.10';

const containerId = (pod: KubeObject, name: string, restarts: number): string =>
  `containerd://${createHash('sha256').update(`${pod.metadata.uid}/${name}/${restarts}`).digest('hex')}`;

const imageId = (image: string): string => `${image.split(':')[0]}@sha256:${createHash('sha256').update(image).digest('hex')}`;

/** The pod conditions in the kubelet's order; a condition keeps its transition time while its status holds. */
function conditions(old: unknown[], scheduled: boolean, started: boolean, ready: boolean, notReadyReason: string): JsonObject[] {
  const want: Array<[string, boolean, string?]> = [
    ['PodReadyToStartContainers', started],
    ['Initialized', true],
    ['Ready', ready, ready ? undefined : notReadyReason],
    ['ContainersReady', ready, ready ? undefined : notReadyReason],
    ['PodScheduled', scheduled],
  ];
  return want.map(([type, ok, reason]) => {
    const status = ok ? 'True' : 'False';
    const prev = old.find((c) => strAt(c, 'type') === type);
    const lastTransitionTime = strAt(prev, 'status') === status ? (strAt(prev, 'lastTransitionTime') ?? now()) : now();
    return { type, status, lastProbeTime: null, lastTransitionTime, ...(reason ? { reason } : {}) };
  });
}

interface Step {
  phase: string;
  state: (c: JsonObject, i: number) => JsonObject;
  ready: boolean;
  started: boolean;
  reason?: string;
}

/** The pod's status after one more step, or undefined when it stays as it is. */
function nextStatus(pod: KubeObject, podIps: IpPool): JsonObject | undefined {
  const status = objAt(pod, 'status');
  const phase = strAt(status, 'phase');
  if (phase === 'Succeeded' || phase === 'Failed') return undefined;
  const containers = listAt(pod, 'spec', 'containers').map((c) => objAt(c));
  const image = (c: JsonObject): string => strAt(c, 'image') ?? '';
  const olds = listAt(status, 'containerStatuses');
  const reasons = olds.map((s) => strAt(s, 'state', 'waiting', 'reason'));
  const waitingOf = reasons.includes('ErrImagePull') ? 'ErrImagePull' : reasons.find((r) => r !== undefined);
  const t = now();
  const running = (c: JsonObject, i: number): JsonObject => ({ running: { startedAt: strAt(olds[i], 'state', 'running', 'startedAt') ?? t } });
  let step: Step | undefined;
  if (olds.length === 0) step = { phase: 'Pending', state: () => ({ waiting: { reason: 'ContainerCreating' } }), ready: false, started: false, reason: 'ContainersNotReady' };
  else if (waitingOf === 'ContainerCreating' || waitingOf === 'ErrImagePull') {
    const missing = containers.some((c) => image(c).includes('missing'));
    if (missing) {
      const reason = waitingOf === 'ContainerCreating' ? 'ErrImagePull' : 'ImagePullBackOff';
      const message = (c: JsonObject): string =>
        reason === 'ErrImagePull' ? `failed to pull and unpack image "${image(c)}": not found` : `Back-off pulling image "${image(c)}"`;
      step = {
        phase: 'Pending',
        state: (c) => (image(c).includes('missing') ? { waiting: { reason, message: message(c) } } : { waiting: { reason: 'ContainerCreating' } }),
        ready: false,
        started: true,
        reason: 'ContainersNotReady',
      };
    } else step = { phase: 'Running', state: running, ready: true, started: true };
  } else if (phase === 'Running' && olds.every((s) => objAt(s).ready === true)) {
    if (strAt(pod, 'spec', 'restartPolicy') !== 'Always') {
      const failed = containers.some((c) => image(c).includes('fail'));
      const exit = (c: JsonObject, i: number): JsonObject => {
        const bad = image(c).includes('fail');
        return { terminated: { exitCode: bad ? 1 : 0, reason: bad ? 'Error' : 'Completed', startedAt: strAt(olds[i], 'state', 'running', 'startedAt') ?? t, finishedAt: t, containerID: containerId(pod, strAt(c, 'name') ?? '', 0) } };
      };
      step = { phase: failed ? 'Failed' : 'Succeeded', state: exit, ready: false, started: false, reason: failed ? 'PodFailed' : 'PodCompleted' };
    } else if (containers.some((c) => image(c).includes('crash'))) {
      const state = (c: JsonObject, i: number): JsonObject =>
        image(c).includes('crash') ? { waiting: { reason: 'CrashLoopBackOff', message: `back-off 10s restarting failed container=${strAt(c, 'name')} pod=${pod.metadata.name}` } } : running(c, i);
      step = { phase: 'Running', state, ready: false, started: true, reason: 'ContainersNotReady' };
    }
  }
  if (!step) return undefined;
  const s = step;
  const ip = strAt(status, 'podIP') ?? (s.phase === 'Running' ? podIps.take() : undefined);
  const containerStatuses = containers.map((c, i) => {
    const name = strAt(c, 'name') ?? '';
    const state = s.state(c, i);
    const crashed = state.waiting !== undefined && strAt(state, 'waiting', 'reason') === 'CrashLoopBackOff';
    const restartCount = crashed ? 1 : 0;
    const started = state.running !== undefined || state.terminated !== undefined || crashed;
    return {
      name,
      image: image(c),
      imageID: started ? imageId(image(c)) : '',
      ready: state.running !== undefined && !crashed && s.ready,
      restartCount,
      started: state.running !== undefined,
      state,
      ...(crashed ? { lastState: { terminated: { exitCode: 1, reason: 'Error', startedAt: t, finishedAt: t, containerID: containerId(pod, name, 0) } } } : {}),
      ...(started ? { containerID: containerId(pod, name, restartCount) } : {}),
    };
  });
  return {
    ...status,
    phase: s.phase,
    conditions: conditions(listAt(status, 'conditions'), true, s.started, s.ready, s.reason ?? ''),
    hostIP: NODE_IP,
    hostIPs: [{ ip: NODE_IP }],
    ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}),
    startTime: strAt(status, 'startTime') ?? t,
    containerStatuses,
  };
}

/** One step for every pod: bind the unbound, finish the deleted, advance the rest on this node. */
export function kubeletStep(ops: Ops, node: string, podIps: IpPool): void {
  for (const pod of ops.store.list(PODS)) {
    const ns = pod.metadata.namespace;
    const nodeName = strAt(pod, 'spec', 'nodeName');
    if (pod.metadata.deletionTimestamp) {
      if (nodeName === node) ops.finish(PODS, pod);
      continue;
    }
    if (!nodeName) {
      const bound = structuredClone(pod);
      (bound.spec as JsonObject).nodeName = node;
      ops.update(PODS, ns, pod.metadata.name, bound, { manager: 'kube-scheduler' });
      continue;
    }
    if (nodeName !== node) continue;
    const status = nextStatus(pod, podIps);
    if (status && !deepEqual(status, pod.status)) ops.update(PODS, ns, pod.metadata.name, { ...pod, status }, { manager: 'kubelet', subresource: 'status' });
  }
}
