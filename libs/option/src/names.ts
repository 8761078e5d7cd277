// Names of modules, drivers and labels. Code refers to these constants, never
// to loose strings, so that a typo is a compile error.

export const Module = {
  ApiServer: 'apiserver',
  AgentCore: 'agentcore',
  Manager: 'manager',
  Collector: 'collector',
  Reporter: 'reporter',
  Daemon: 'daemon',
} as const;
export type ModuleName = (typeof Module)[keyof typeof Module];
export const MODULES: readonly ModuleName[] = Object.values(Module);

export const Driver = {
  Docker: 'docker',
  Process: 'process',
  Cgroup: 'cgroup',
  Rpc: 'rpc',
  /** Kubernetes workloads, through the cluster's API server. */
  K8s: 'k8s',
  /** Helm charts, rendered by the helm binary and applied through the cluster's API server. */
  Helm: 'helm',
  /** nftables: network segmentation of containers. */
  Network: 'network',
} as const;
export type DriverName = (typeof Driver)[keyof typeof Driver];
export const DRIVERS: readonly DriverName[] = Object.values(Driver);

/** Labels that mark the containers the agent manages, so they can be found again. */
export const Label = {
  Managed: 'io.agent.managed',
  ObjectId: 'io.agent.object-id',
  HostId: 'io.agent.host-id',
  Name: 'io.agent.name',
} as const;

/** The same marks on Kubernetes objects and their pods (Kubernetes label keys take one prefix/). */
export const KubeLabel = {
  ObjectId: 'io.agent/object-id',
  HostId: 'io.agent/host-id',
} as const;

/** Fully qualified gRPC service names, as health checks and reflection know them. */
export const GrpcService = {
  Agent: 'agent.v1.AgentService',
  Policy: 'agent.v1.PolicyService',
  ReportSink: 'agent.v1.ReportSink',
  AgentCore: 'agent.internal.v1.AgentCore',
  Manager: 'agent.internal.v1.Manager',
  Collector: 'agent.internal.v1.Collector',
  Reporter: 'agent.internal.v1.Reporter',
  /** Unary calls between the services of five processes, many on one stream. */
  Pipe: 'agent.internal.v1.Pipe',
} as const;

/** grpc.health.v1 names of what the services depend on, beside their own service names. */
export const HealthComponent = {
  /** The store takes writes (agentcore; mirrored on the apiserver). */
  Store: 'agent.store',
  /** Prefix: one entry per store record recovery could not read, e.g. agent.store.damaged/workloads.<host>.<id>. */
  DamagedRecord: 'agent.store.damaged/',
  /** agentcore's task worker keeps up. */
  Worker: 'agent.worker',
  /** Docker answers (manager). */
  Docker: 'agent.docker',
  /** The network dataplane (nftables) takes transactions (manager). */
  Network: 'agent.network',
} as const;

/** The agent's version, as registered upstream and in the host record. */
export const AGENT_VERSION = '0.1.0';

/** The object id under which the host's own heartbeat figures are reported. */
export const HOST_OBJECT_ID = 'host';

/** Network rule ids from here up are the agent's own (learned in Discover mode); a user writes 1..9999. */
export const LEARNED_RULE_IDS = 10_000;

/**
 * The dataplane marks each connection it passes (a 32-bit conntrack mark):
 * with the id of the allow rule that passed it, or with NO_RULE_MARK when no
 * allow rule did (Discover, Monitor, a violation). A connection without a
 * mark never met the policy, and is not passed as established.
 */
export const MAX_RULE_ID = 4_294_967_294;
export const NO_RULE_MARK = MAX_RULE_ID + 1;
