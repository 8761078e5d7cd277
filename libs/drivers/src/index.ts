export { BaseDriver, NO_CAPABILITIES, NO_FIGURES, WORKLOAD_CAPABILITIES, allLimits, isDiscovering } from './driver';
export type { Driver, Capabilities, ReportPayload, PushResult, Discovering, Sampler } from './driver';
export { CPU_WEIGHT, DIMENSIONS, NO_LIMITS, isMap, isNone, limits, mismatch, sameValue, withFollowers } from './dimensions';
export type { Dimension, Limit } from './dimensions';
export { SPEC_LIMITS, checkArgv, checkEnv, fail, maxLen, redactEnv } from './spec-checks';
export { containerFilter } from './types';
export type {
  Resources,
  ResourceChange,
  DeviceLimits,
  CgroupRef,
  CgroupVersion,
  WorkloadSpec,
  Runtime,
  Phase,
  Figures,
  RuntimeEvent,
  RuntimeListener,
  ContainerFilter,
  DiscoveryEvent,
  DiscoveryListener,
} from './types';
export { CgroupFs, V1_CONTROLLERS, UNIFIED, checkRelativeCgroupPath, safeRead } from './cgroup-fs';
export { CgroupDriver, CGROUP_CAPABILITIES, validateCgroup } from './cgroup-driver';
export type { CgroupWorkload } from './cgroup-driver';
export { FigureReader } from './figure-reader';
export { ProcessDriver, PROCESS_CAPABILITIES, validateProcess, admitProcess, redactProcess } from './process-driver';
export type { ProcessWorkload, ProcessPolicy } from './process-driver';
export { resolveExecutable, searchPathOf } from './executables';
export type { ProcessDriverOptions } from './process-driver';
export { resolveUser } from './users';
export type { ResolvedUser, UserFiles } from './users';
export { checkAllowedExecutable } from './exec-policy';
export { DockerDriver, DOCKER_CAPABILITIES, validateContainer, redactContainer } from './docker-driver';
export type { ContainerWorkload } from './docker-driver';
export type { DockerDriverOptions } from './docker-driver';
export { RpcDriver, connectUpstream } from './rpc-driver';
export { hostFigures, netDevPath, parseNetDev, processStartTime, isAlive } from './proc-figures';
export { NetworkDriver } from './network/network-driver';
export { macFor } from './network/address';
export type { NetworkDriverOptions } from './network/network-driver';
export { LogVerdict, formatLogPrefix, parseLogPrefix } from './network/types';
export type { Endpoint, NetRule, NetworkState, ProgramResult, Enforcing, EnforcementMode, RuleAction, LogVerdictCode, LogPrefix, NetPath } from './network/types';
export { FlowLog } from './network/nflog';
export type { NflogPacket, FlowLogOptions } from './network/nflog';
export { K8sDriver, K8S_CAPABILITIES } from './k8s/k8s-driver';
export type { K8sDriverOptions } from './k8s/k8s-driver';
export type { KubeBaseOptions } from './k8s/kube-base';
export { validateK8s, admitK8s, redactK8s, changeK8s, parseManifest, WORKLOAD_TYPES } from './k8s/workload';
export type { K8sWorkload, K8sChange, KubeObject } from './k8s/workload';
export { podCgroupCandidates, sumFigures } from './k8s/pod-figures';
export { standingOf } from './k8s/status';
export { HelmDriver, HELM_CAPABILITIES, inventoryName } from './helm/helm-driver';
export type { HelmDriverOptions } from './helm/helm-driver';
export { validateHelm, admitHelm, redactHelm, changeHelm } from './helm/release';
export type { HelmWorkload, HelmChange } from './helm/release';
