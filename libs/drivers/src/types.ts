// Domain types shared by the drivers and the services that use them. They
// mirror the proto messages field for field, but are owned here so that
// drivers never depend on generated code.

/** An object's limits; each is a row of the dimensions table (dimensions.ts), and its none value is "no limit". */
export interface Resources {
  /** CPU cores; 0 = no limit. */
  readonly cpus: number;
  /** Bytes; 0 = no limit. */
  readonly memoryBytes: number;
  /** 0 = no limit. */
  readonly pidsLimit: number;
  /** CPUs it may run on ("0-1,3"); '' = any. */
  readonly cpusetCpus: string;
  /** NUMA memory nodes it may use; '' = any. */
  readonly cpusetMems: string;
  /** Relative CPU weight 1-10000 (v1 cpu.shares = weight * 10.24); 0 = the default (100). */
  readonly cpuWeight: number;
  /** Bytes above which it is throttled and reclaimed (v2 memory.high; v1 soft limit); 0 = none. */
  readonly memoryHighBytes: number;
  /** Bytes of memory plus swap (Docker's --memory-swap; equal to memoryBytes = no swap); 0 = none. */
  readonly memorySwapBytes: number;
  /** Bytes/s read from each block device, keyed "MAJOR:MINOR"; {} = none. */
  readonly ioReadBps: DeviceLimits;
  /** Bytes/s written to each block device, keyed "MAJOR:MINOR"; {} = none. */
  readonly ioWriteBps: DeviceLimits;
}

/** A limit per block device ("MAJOR:MINOR" -> value); a device not named has none. */
export type DeviceLimits = Readonly<Record<string, number>>;

/**
 * An update: undefined keeps a field, none (0, '', {}) removes its limit,
 * anything else sets it. A map-valued field is the whole new map (the devices
 * it leaves out have no limit).
 */
export type ResourceChange = Partial<Resources>;


export type CgroupVersion = 'v1' | 'v2';

/** Where an object's cgroup lives: v1 controller -> dir, or v2 "unified" -> dir. */
export interface CgroupRef {
  readonly version: CgroupVersion;
  readonly paths: Readonly<Record<string, string>>;
}

/**
 * What a driver is given to make an object: the parts every kind has, and
 * the kind's own part (the ObjectSpec case), whose type the driver declares:
 * ContainerWorkload (docker), ProcessWorkload (process), CgroupWorkload (cgroup).
 */
export interface WorkloadSpec<W = unknown> {
  readonly objectId: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly resources: Resources;
  readonly workload: W;
}

/**
 * Where a workload stands, for kinds with more states than running or ended
 * (Kubernetes: rolling out, given up). Without it, running says.
 */
export type Phase = 'pending' | 'running' | 'stopped' | 'failed';

/** What a driver knows of a live object. */
export interface Runtime {
  /** Container id; for processes and cgroups the cgroup path below the agent's root. */
  readonly runtimeId: string;
  /** 0 when the object has no process of its own (a cgroup). */
  readonly pid: number;
  readonly cgroup: CgroupRef;
  /** Limits read back from the object itself. */
  readonly applied: Resources;
  readonly running: boolean;
  /** Processes: start time (clock ticks since boot), to tell the process from a later one with its pid. */
  readonly startTime?: number;
  /** Not running: how it ended, when known (128 + n when killed by signal n). */
  readonly exitCode?: number;
  /** Running containers: the IPv4 address and MAC on their network. */
  readonly ip?: string;
  readonly mac?: string;
  /** Kinds with more states than running or ended: where it stands, and why (e.g. "ImagePullBackOff"). */
  readonly phase?: Phase;
  readonly reason?: string;
}

/** One sample of an object's figures; a figure it does not have is undefined. */
export interface Figures {
  readonly cpuUsageNs?: number;
  readonly memoryUsageBytes?: number;
  readonly memoryLimitBytes?: number;
  readonly pids?: number;
  readonly netRxBytes?: number;
  readonly netTxBytes?: number;
  readonly blkioReadBytes?: number;
  readonly blkioWriteBytes?: number;
  /** CPU bandwidth periods in which it was throttled, and the time it spent so. */
  readonly cpuThrottledPeriods?: number;
  readonly cpuThrottledNs?: number;
  /** Times it went over memory.high (v2 only). */
  readonly memoryHighEvents?: number;
  /** Memory in use less its inactive file cache (what cAdvisor calls the working set). */
  readonly memoryWorkingSetBytes?: number;
  /** CPU bandwidth limit: quota µs of CPU time every period µs (quota unset: no limit). */
  readonly cpuQuotaUs?: number;
  readonly cpuPeriodUs?: number;
}

/** A workload stopped or started by itself (not through the driver). */
export interface RuntimeEvent {
  readonly objectId: string;
  readonly runtimeId: string;
  readonly running: boolean;
  readonly reason: string;
  readonly pid: number;
  /** Stopped: its exit status, when known (128 + n when killed by signal n). */
  readonly exitCode?: number;
  /** As Runtime.phase. */
  readonly phase?: Phase;
  /**
   * Not a start or a stop: a limit change the runtime's own record refused
   * after the cgroup took it (Docker), so the cgroup went back. refused says
   * why, applied is what the cgroup holds now.
   */
  readonly limits?: { readonly refused: string; readonly applied: Resources };
}

export type RuntimeListener = (e: RuntimeEvent) => void;

/** Decides, from a container's labels, whether the agent adopts it. */
export type ContainerFilter = (labels: Readonly<Record<string, string>>) => boolean;

/** A container the agent did not create: found at startup, started, stopped, or removed. */
export interface DiscoveryEvent {
  readonly kind: 'found' | 'started' | 'stopped' | 'removed';
  readonly id: string;
  readonly reason: string;
  /** For found and started. */
  readonly container?: { readonly name: string; readonly image: string; readonly command: readonly string[]; readonly labels: Readonly<Record<string, string>> };
  readonly runtime?: Runtime;
}

export type DiscoveryListener = (e: DiscoveryEvent) => void;

/**
 * AGENT_DISCOVER: "off", "*" (every container), or comma-separated label
 * selectors that must all match ("key" or "key=value").
 */
export function containerFilter(spec: string): ContainerFilter | undefined {
  if (spec === 'off' || spec === '') return undefined;
  if (spec === '*') return () => true;
  const rules = spec.split(',').map((r) => r.trim()).filter(Boolean).map((r) => {
    const i = r.indexOf('=');
    return i < 0 ? { key: r, value: undefined } : { key: r.slice(0, i), value: r.slice(i + 1) };
  });
  return (labels) => rules.every((r) => (r.value === undefined ? r.key in labels : labels[r.key] === r.value));
}
