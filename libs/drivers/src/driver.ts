import type { DriverName } from '@agent/option';
import { NotSupportedError } from '@agent/grpc-kit';
import { DIMENSIONS, type Limit } from './dimensions';
import type { ContainerFilter, DiscoveryListener, Figures, ResourceChange, Runtime, RuntimeListener, WorkloadSpec } from './types';

/** Plain flags: what a driver can do. Callers check them instead of catching. */
export interface Capabilities {
  /** create / update / remove / inspect workloads. */
  readonly lifecycle: boolean;
  /** Which limits create() and update() can set; a request for another is refused before any call. */
  readonly limits: Readonly<Record<Limit, boolean>>;
  /** sampler(): the object's figures. Without it a sampler reads nothing (every figure unset). */
  readonly stats: boolean;
  /** Its workloads live in a cgroup the agent writes and reads (runtime.cgroup holds its directories). */
  readonly cgroup: boolean;
  /** Its workloads have a network address of their own (runtime.ip and mac): they can be segmented. */
  readonly network: boolean;
  /** push() reports upstream (Bus Out). */
  readonly report: boolean;
  /** watch(): tells when a workload stops or starts by itself. */
  readonly events: boolean;
}

export interface ReportPayload {
  readonly hostId: string;
  /** agent.v1.Report messages; the rpc driver sends them as they are. */
  readonly reports: readonly unknown[];
  /** agent.v1.ObjectChange messages. */
  readonly changes?: readonly unknown[];
  /** agent.v1.Gap messages: samples the spool dropped. */
  readonly gaps?: readonly unknown[];
  /** agent.v1.SpooledFlow messages: network flows recorded on the host. */
  readonly flows?: readonly unknown[];
}

/** An object's figures, read again on each call: what the collector samples. Close it when done. */
export interface Sampler {
  read(): Figures;
  close(): void;
}

/** The sampler of an object without figures: every figure unset, never invented. */
export const NO_FIGURES: Sampler = { read: () => ({}), close: () => undefined };

export interface PushResult {
  readonly accepted: number;
  /**
   * Per boot id, the highest seq the upstream has stored everything up to.
   * Undefined from an upstream that does not acknowledge by seq: it has the
   * whole payload.
   */
  readonly acks?: ReadonlyMap<string, number>;
}

/**
 * The one driver interface. Every driver implements all of it; what it cannot
 * do throws NotSupportedError and is false in its capabilities. W is the
 * driver's own part of an object's spec (ContainerWorkload for docker...).
 */
export interface Driver<W = unknown> {
  readonly name: DriverName;
  readonly capabilities: Capabilities;
  /** Resolves when the driver's backend answers (Docker ping, cgroup fs mounted, upstream up). */
  health(): Promise<void>;
  create(spec: WorkloadSpec<W>): Promise<Runtime>;
  /**
   * Applies the change and returns the runtime with limits read back from the
   * object. spec is the object's spec as it is to be after the update, for
   * drivers that apply a whole spec (k8s); the others need only the change.
   */
  update(runtime: Runtime, change: ResourceChange, spec?: WorkloadSpec<W>): Promise<Runtime>;
  /**
   * The limits of capabilities.limits that this host cannot give the
   * driver's objects (a kernel without the controller or file): API field
   * (agent.v1.Resources) -> why. Asked once, at accept, so that such a
   * request is refused before it is recorded.
   */
  unsupportedLimits(): Readonly<Record<string, string>>;
  /** Idempotent: removing what is already gone succeeds. */
  remove(runtime: Runtime): Promise<void>;
  /**
   * Removes whatever exists of the object's workload, found by the marks
   * create gives it (container label, cgroup name), recorded or not: what a
   * failed or interrupted create left. Idempotent.
   */
  purge(spec: WorkloadSpec<W>): Promise<void>;
  inspect(runtime: Runtime): Promise<Runtime>;
  /**
   * After a restart: finds the workload again from what was recorded and
   * watches it again. With no runtime (a create the restart interrupted) it is
   * found by the spec's object id, and only if the create got to the end (a
   * process that exec'd its command, a container that was started): what is
   * half-made is NotFoundError too, for the caller to purge. Throws
   * NotFoundError when it is gone.
   */
  adopt(spec: WorkloadSpec<W>, runtime: Runtime | undefined): Promise<Runtime>;
  /**
   * After a restart's recovery: removes what the driver keeps beside the
   * workloads (files) for objects not in keep, made before madeBefore (what a
   * create under way makes is newer). Returns how many were removed.
   */
  sweep(keep: ReadonlySet<string>, madeBefore: Date): Promise<number>;
  /** The object's figures, for repeated reading (files kept open where the driver can). */
  sampler(runtime: Runtime): Sampler;
  push(payload: ReportPayload): Promise<PushResult>;
  /** Subscribes to workloads stopping or starting by themselves; returns the unsubscribe. */
  watch(listener: RuntimeListener): () => void;
  close(): Promise<void>;
}

/** An optional interface: drivers that find workloads they did not create. */
export interface Discovering {
  discover(filter: ContainerFilter, listener: DiscoveryListener): Promise<() => void>;
}

export function isDiscovering(d: Driver): d is Driver & Discovering {
  return typeof (d as Partial<Discovering>).discover === 'function';
}

/** Every dimension of the table, each set to can. */
export function allLimits(can: boolean): Readonly<Record<Limit, boolean>> {
  return Object.fromEntries(DIMENSIONS.map((d) => [d.key, can])) as Record<Limit, boolean>;
}

export const NO_CAPABILITIES: Capabilities = {
  lifecycle: false,
  limits: allLimits(false),
  stats: false,
  cgroup: false,
  network: false,
  report: false,
  events: false,
};

/** A driver that runs workloads in cgroups: every lifecycle call, every limit, stats and events. */
export const WORKLOAD_CAPABILITIES: Capabilities = {
  lifecycle: true,
  limits: allLimits(true),
  stats: true,
  cgroup: true,
  network: false,
  report: false,
  events: true,
};

/** Defaults for every method: "not supported", loudly. */
export abstract class BaseDriver<W = unknown> implements Driver<W> {
  abstract readonly name: DriverName;
  abstract readonly capabilities: Capabilities;

  abstract health(): Promise<void>;

  create(_spec: WorkloadSpec<W>): Promise<Runtime> {
    return this.unsupported('create');
  }
  update(_runtime: Runtime, _change: ResourceChange, _spec?: WorkloadSpec<W>): Promise<Runtime> {
    return this.unsupported('update');
  }
  /** What capabilities.limits offers, the host has. */
  unsupportedLimits(): Readonly<Record<string, string>> {
    return {};
  }
  remove(_runtime: Runtime): Promise<void> {
    return this.unsupported('remove');
  }
  purge(_spec: WorkloadSpec<W>): Promise<void> {
    return this.unsupported('purge');
  }
  inspect(_runtime: Runtime): Promise<Runtime> {
    return this.unsupported('inspect');
  }
  adopt(_spec: WorkloadSpec<W>, _runtime: Runtime | undefined): Promise<Runtime> {
    return this.unsupported('adopt');
  }
  /** Nothing kept beside the workloads: nothing to sweep. */
  sweep(_keep: ReadonlySet<string>, _madeBefore: Date): Promise<number> {
    return Promise.resolve(0);
  }
  /** No figures of its own: every figure unset. */
  sampler(_runtime: Runtime): Sampler {
    return NO_FIGURES;
  }
  push(_payload: ReportPayload): Promise<PushResult> {
    return this.unsupported('push');
  }
  watch(_listener: RuntimeListener): () => void {
    throw new NotSupportedError(`${this.name} driver does not support watch`);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }

  protected unsupported(op: string): Promise<never> {
    return Promise.reject(new NotSupportedError(`${this.name} driver does not support ${op}`));
  }
}
