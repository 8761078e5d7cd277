import * as path from 'node:path';
import { Driver as DriverNames, type AgentConfig, type DriverName } from '@agent/option';
import { InvalidArgumentError } from '@agent/grpc-kit';
import {
  admitProcess,
  CGROUP_CAPABILITIES,
  DOCKER_CAPABILITIES,
  DockerDriver,
  PROCESS_CAPABILITIES,
  ProcessDriver,
  K8S_CAPABILITIES,
  K8sDriver,
  HELM_CAPABILITIES,
  HelmDriver,
  admitHelm,
  changeHelm,
  redactHelm,
  validateHelm,
  admitK8s,
  changeK8s,
  redactK8s,
  validateK8s,
  redactContainer,
  redactProcess,
  validateCgroup,
  validateContainer,
  validateProcess,
  type Capabilities,
  type CgroupDriver,
  type Driver,
  type KubeBaseOptions,
} from '@agent/drivers';
import { v1 } from '@agent/proto';

// The kinds registry: the one table that says, for each kind of object, which
// ObjectSpec case holds its spec, which driver runs it, how its spec is
// checked and what its driver can do. The manager, the validation, recovery,
// segmentation and the collector read it; nothing else names a kind.
// Adding a kind: a driver file, a row here, a case in ObjectSpec's oneof (and
// a value of Kind), a driver name in libs/option, and a contract-suite
// fixture (contract.test.ts). See README "Adding an object kind".

/** The ObjectSpec oneof cases: one per kind. */
export type WorkloadField = Exclude<keyof v1.ObjectSpec, 'name' | 'kind' | 'labels' | 'resources'>;
/** A kind's part of the spec, as the API carries it. */
export type WorkloadOf<F extends WorkloadField> = NonNullable<v1.ObjectSpec[F]>;

/** What the drivers of one host share (the cgroup driver reads every cgroup). */
export interface SharedDrivers {
  readonly cgroup: CgroupDriver;
}

/** The UpdateRequest oneof cases: a kind's own changes besides limits. */
export type ChangeField = Exclude<keyof v1.UpdateRequest, 'objectId' | 'resources' | 'labels' | 'wait'>;

/** How a kind takes an Update's own changes (its UpdateRequest case). */
export interface KindChange<F extends WorkloadField> {
  readonly field: ChangeField;
  /** The kind's spec after the change; a bad change is InvalidArgumentError naming its field (at field: "k8s"). */
  apply(workload: WorkloadOf<F>, change: NonNullable<v1.UpdateRequest[ChangeField]>, field: string): WorkloadOf<F>;
}

export interface KindRow<F extends WorkloadField = WorkloadField> {
  readonly kind: v1.Kind;
  /** The ObjectSpec case that holds the kind's spec. */
  readonly field: F;
  readonly driver: DriverName;
  /** What the kind's driver can do, known without one (the contract suite checks its driver says the same). */
  readonly capabilities: Capabilities;
  /**
   * A workload found gone at a restart: STATE_STOPPED keeps the object (it
   * ended by itself), STATE_DELETED forgets it (someone removed it).
   */
  readonly goneWhileDown: v1.State;
  /** The span attribute that names the workload's runtime id. */
  readonly runtimeAttribute: string;
  /** The host's driver for the kind. */
  build(config: AgentConfig, shared: SharedDrivers): Driver<WorkloadOf<F>>;
  /** Syntax checks of the kind's spec at field ("spec.container"): InvalidArgumentError naming the field. */
  validate(workload: WorkloadOf<F>, field: string): void;
  /** Host checks answered at create time (users, allow lists); returns the spec with defaults filled in. */
  admit?(workload: WorkloadOf<F>, config: AgentConfig): WorkloadOf<F>;
  /** The spec as a reader sees it: secrets hidden. */
  redact?(workload: WorkloadOf<F>): WorkloadOf<F>;
  /** Kinds whose spec an Update may change besides limits and labels. */
  readonly change?: KindChange<F>;
}

/** A kind's change, typed by its own UpdateRequest case (the row holds any case). */
function changeOf<F extends WorkloadField, C extends ChangeField>(field: C, apply: (w: WorkloadOf<F>, change: NonNullable<v1.UpdateRequest[C]>, at: string) => WorkloadOf<F>): KindChange<F> {
  return { field, apply: apply as KindChange<F>['apply'] };
}

/** What the drivers of Kubernetes objects (k8s, helm) take from the config. */
function kubeOptions(config: AgentConfig): KubeBaseOptions {
  return { hostId: config.hostId, kubeconfig: config.kubeconfig, nodeName: config.nodeName, readyTimeoutMs: config.k8sReadyTimeoutMs, goneTimeoutMs: config.k8sReadyTimeoutMs };
}

/** Rows are typed by their own case; the table holds them side by side. */
function row<F extends WorkloadField>(r: KindRow<F>): KindRow {
  return r as unknown as KindRow;
}

export const KINDS: readonly KindRow[] = [
  row({
    kind: v1.Kind.KIND_CONTAINER,
    field: 'container',
    driver: DriverNames.Docker,
    capabilities: DOCKER_CAPABILITIES,
    goneWhileDown: v1.State.STATE_DELETED,
    runtimeAttribute: 'container.id',
    build: (config, shared) => new DockerDriver(shared.cgroup, { socketPath: config.dockerSocket, hostId: config.hostId, stopGraceMs: config.stopGraceMs }),
    validate: validateContainer,
    redact: redactContainer,
  }),
  row({
    kind: v1.Kind.KIND_PROCESS,
    field: 'process',
    driver: DriverNames.Process,
    capabilities: PROCESS_CAPABILITIES,
    // A process that is gone exited: its object stays, STOPPED.
    goneWhileDown: v1.State.STATE_STOPPED,
    runtimeAttribute: 'agent.cgroup',
    build: (config, shared) =>
      new ProcessDriver(shared.cgroup, {
        logDir: path.join(config.dataDir, 'logs'),
        // The data dir is private (0700): a process run as an unprivileged user could not enter it.
        defaultCwd: '/',
        stopGraceMs: config.stopGraceMs,
        defaultUser: config.processUser,
        allow: config.processAllow,
        logMaxBytes: config.processLogMaxBytes,
      }),
    validate: validateProcess,
    admit: admitProcess,
    redact: redactProcess,
  }),
  row({
    kind: v1.Kind.KIND_CGROUP,
    field: 'cgroup',
    driver: DriverNames.Cgroup,
    capabilities: CGROUP_CAPABILITIES,
    goneWhileDown: v1.State.STATE_DELETED,
    runtimeAttribute: 'agent.cgroup',
    build: (_config, shared) => shared.cgroup,
    validate: validateCgroup,
  }),
  row({
    kind: v1.Kind.KIND_K8S,
    field: 'k8s',
    driver: DriverNames.K8s,
    capabilities: K8S_CAPABILITIES,
    // A workload found gone was deleted in the cluster.
    goneWhileDown: v1.State.STATE_DELETED,
    runtimeAttribute: 'k8s.workload',
    build: (config, shared) => new K8sDriver(shared.cgroup.fs, kubeOptions(config)),
    validate: validateK8s,
    admit: admitK8s,
    redact: redactK8s,
    change: changeOf<'k8s', 'k8s'>('k8s', changeK8s),
  }),
  row({
    kind: v1.Kind.KIND_HELM,
    field: 'helm',
    driver: DriverNames.Helm,
    capabilities: HELM_CAPABILITIES,
    // A release found gone (its inventory) was deleted in the cluster.
    goneWhileDown: v1.State.STATE_DELETED,
    runtimeAttribute: 'helm.release',
    build: (config, shared) =>
      new HelmDriver(shared.cgroup.fs, { ...kubeOptions(config), render: { bin: config.helmBin, chartAllow: config.helmChartAllow, timeoutMs: 30_000 } }),
    validate: validateHelm,
    admit: admitHelm,
    redact: redactHelm,
    change: changeOf<'helm', 'helm'>('helm', changeHelm),
  }),
];

const BY_KIND = new Map(KINDS.map((r) => [r.kind, r]));

/** The kind names a request may use, for messages. */
export function kindNames(): string {
  return KINDS.map((r) => v1.Kind[r.kind]).join(', ');
}

/** The kind's row, or undefined for a kind this agent does not have. */
export function findKind(kind: v1.Kind | undefined): KindRow | undefined {
  return kind === undefined ? undefined : BY_KIND.get(kind);
}

/** The kind's row; an unknown kind is INVALID_ARGUMENT naming field. */
export function kindRow(kind: v1.Kind, field = 'spec.kind'): KindRow {
  const r = BY_KIND.get(kind);
  if (!r) throw new InvalidArgumentError(field, kind === v1.Kind.KIND_UNSPECIFIED ? `required: one of ${kindNames()}` : `unknown kind ${v1.Kind[kind] ?? kind}; one of ${kindNames()}`);
  return r;
}

/** The row of the kind a driver runs. */
export function kindOfDriver(name: DriverName): KindRow | undefined {
  return KINDS.find((r) => r.driver === name);
}

/** The kind's part of a spec (its ObjectSpec case). */
export function workloadOf(spec: v1.ObjectSpec): unknown {
  return spec[kindRow(spec.kind).field];
}
