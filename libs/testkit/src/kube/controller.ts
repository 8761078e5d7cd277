// The fake's control plane: every phaseMs one step of the kubelet, the
// workload controllers, the garbage collector and the namespace controller,
// so objects move through their phases at a fixed pace.
import * as os from 'node:os';
import { IpPool } from './defaults';
import { garbageStep, namespaceStep } from './gc';
import { guarded } from './json';
import { kubeletStep, NODE_IP } from './kubelet';
import type { Ops } from './ops';
import { mustKind } from './resources';
import { workloadStep } from './workloads';

export class Controller {
  private readonly timer: NodeJS.Timeout;
  private readonly podIps = new IpPool('10.244');

  constructor(
    private readonly ops: Ops,
    private readonly node: string,
    phaseMs: number,
  ) {
    this.timer = setInterval(() => this.step(), phaseMs);
  }

  /** One step of everything; the kubelet first, so a pod's change reaches its owners' status in the same step. */
  step(): void {
    guarded(() => kubeletStep(this.ops, this.node, this.podIps));
    guarded(() => workloadStep(this.ops));
    guarded(() => garbageStep(this.ops));
    guarded(() => namespaceStep(this.ops));
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** What a fresh cluster has: its namespaces and the one Ready node the pods are bound to. */
export function seed(ops: Ops, node: string): void {
  const manager = { manager: 'kube-apiserver' };
  for (const name of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) ops.create(mustKind('Namespace'), undefined, { metadata: { name, labels: { 'kubernetes.io/metadata.name': name } } }, manager);
  const capacity = { cpu: String(os.cpus().length), memory: `${Math.floor(os.totalmem() / 1024)}Ki`, pods: '110' };
  const nodeObj = ops.create(mustKind('Node'), undefined, { metadata: { name: node, labels: { 'kubernetes.io/hostname': node, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' } }, spec: {} }, manager);
  const status = {
    capacity,
    allocatable: capacity,
    conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status', lastHeartbeatTime: nodeObj.metadata.creationTimestamp, lastTransitionTime: nodeObj.metadata.creationTimestamp }],
    addresses: [
      { type: 'InternalIP', address: NODE_IP },
      { type: 'Hostname', address: node },
    ],
    nodeInfo: { kubeletVersion: 'v1.32.0', kubeProxyVersion: 'v1.32.0', containerRuntimeVersion: 'containerd://1.7.24', operatingSystem: 'linux', architecture: 'amd64', osImage: 'Fake Linux', kernelVersion: os.release() },
  };
  ops.update(mustKind('Node'), undefined, node, { ...nodeObj, status }, { manager: 'kubelet', subresource: 'status' });
}
