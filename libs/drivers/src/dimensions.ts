import * as fs from 'node:fs';
import * as path from 'node:path';
import { SpanStatusCode } from '@opentelemetry/api';
import { DriverError, FailedPreconditionError, tracer } from '@agent/grpc-kit';
import { Driver as DriverNames } from '@agent/option';
import type { CgroupRef, DeviceLimits, ResourceChange, Resources } from './types';

// The resource dimensions: one row per limit an object can have, saying how
// it is checked, written and read back on cgroup v1 and v2, and what Docker
// calls it. Everything that handles limits (validation, the cgroup files,
// Docker's HostConfig, updates, read-back) goes through this table; a new
// dimension is a row here and a field in Resources (and agent.v1.Resources).
// Which kinds support a dimension is their driver's capabilities.limits.
// A row's value is a number, a text, or a map (one limit per block device);
// the generic functions below handle each shape, never a row by name.

/** A limit: a field of Resources. */
export type Limit = keyof Resources;

/** v1: controller -> dir; v2: every row's controller lives in the unified dir. */
interface Side<V> {
  /** The v1 controller or the v2 controller name (as cgroup.controllers lists it). */
  readonly controller: string;
  /** The file whose presence says the kernel has the dimension. */
  readonly file: string;
  /** Sets the dimension to exactly value (none removes it; a map's devices left out lose theirs). */
  write(dir: string, value: V): void;
  read(dir: string): V;
}

export interface Dimension<K extends Limit = Limit> {
  readonly key: K;
  /** Its name in the API (agent.v1.Resources). */
  readonly field: string;
  /** The value that means "no limit" (what removing it leaves). */
  readonly none: Resources[K];
  /** Why a value asked for (not none) is out of bounds, or undefined when fine (a map: the map as a whole). */
  check(value: Resources[K]): string | undefined;
  /** Map-valued dimensions (one limit per key): why a key, or one key's value, is wrong. */
  readonly entries?: { key(k: string): string | undefined; value(v: number): string | undefined };
  /** Why this host cannot take the value although it has the cgroup file (a device it has not got). */
  hostLacks?(value: Resources[K]): string | undefined;
  /** Cross-field rule: why this value (set) does not go with the object's other limits. */
  against?(value: Resources[K], all: Resources): string | undefined;
  /**
   * A dimension defined relative to another (swap is a total over memory,
   * of): what it becomes when a change moves that one but does not name this
   * one; undefined leaves it as it is.
   */
  readonly follow?: { readonly of: Limit; value(current: Resources, next: Resources): Resources[K] | undefined };
  readonly v1: Side<Resources[K]>;
  readonly v2: Side<Resources[K]>;
  /**
   * The Docker HostConfig fields for a value, where Docker has an exact
   * equivalent (dimensions without are written to the container's cgroup by
   * the driver); undefined for a value Docker cannot take on an existing
   * container (removing some limits).
   */
  docker?(value: Resources[K]): Record<string, unknown> | undefined;
}

const CFS_PERIOD_US = 100_000;
/** v1 reports "no memory limit" as the largest page-aligned int64; anything this large is no limit. */
export const V1_UNLIMITED = 2n ** 62n;
/** cgroup v2's cpu.weight range; the default is 100. */
export const CPU_WEIGHT = { min: 1, max: 10_000, default: 100 } as const;
/** v1 cpu.shares of the default weight: weights map linearly so that defaults meet (100 <-> 1024). */
const SHARES_PER_WEIGHT = 1024 / CPU_WEIGHT.default;
const CPU_LIST = /^(\d+(-\d+)?)(,\d+(-\d+)?)*$/;
/** A block device as the kernel names it in cgroup files and /sys/dev/block. */
const DEVICE = /^\d+:\d+$/;
const MAX_DEVICES = 16;
const PIB = 2 ** 50;

const read = (dir: string, file: string): string => {
  try {
    // dir is a normalized absolute path (CgroupRef): a join's normalize would cost more than the read.
    return fs.readFileSync(`${dir}/${file}`, 'utf8').trim();
  } catch {
    return '';
  }
};
const bytesOrNone = (text: string): number => (text === '' || text === 'max' || BigInt(text) >= V1_UNLIMITED ? 0 : Number(text));
const maxOr = (v: number): string => (v === 0 ? 'max' : String(v));
// Docker's own minimum; the kernel's is lower but anything below this is a mistake.
const checkMemoryBytes = (v: number): string | undefined => (v < 6 * 1024 * 1024 ? 'at least 6291456 bytes (6 MiB)' : v > PIB ? 'more than 1125899906842624 bytes (1 PiB)' : undefined);

/** A cpuset list: ascending ranges of numbers ("0-3,6"), at most 4096. */
function checkCpuList(value: string): string | undefined {
  if (!CPU_LIST.test(value)) return 'a list of numbers and ranges, e.g. "0-1" or "0,2-3"';
  for (const part of value.split(',')) {
    const [a = 0, b = a] = part.split('-').map(Number);
    if (b < a) return `range ${part} is backwards`;
    if (b > 4095) return `${b} is beyond 4095`;
  }
  return undefined;
}

/**
 * v1 cpusets start empty and a task cannot join an empty one; "no
 * restriction" is the parent's set, and reads back as none.
 */
function cpusetV1(file: string): Side<string> {
  return {
    controller: 'cpuset',
    file,
    write: (dir, value) => writeLimit(path.join(dir, file), value === '' ? read(path.dirname(dir), file) : value),
    read: (dir) => {
      const own = read(dir, file);
      return own === read(path.dirname(dir), file) ? '' : own;
    },
  };
}

/** v2 cpusets are empty when unrestricted (cpuset.cpus.effective shows the inherited set). */
function cpusetV2(file: string): Side<string> {
  return { controller: 'cpuset', file, write: (dir, value) => writeLimit(path.join(dir, file), value), read: (dir) => read(dir, file) };
}

const row = <K extends Limit>(d: Dimension<K>): Dimension => d as unknown as Dimension;

/**
 * A per-device limit file: the value is written one line per device (the
 * devices it leaves out get the line that removes theirs), and read back as
 * the devices the file limits.
 */
function deviceSide(controller: string, file: string, line: (dev: string, bps: number | undefined) => string, parse: (line: string) => [string, number] | undefined): Side<DeviceLimits> {
  const readDevices = (dir: string): DeviceLimits => Object.fromEntries(read(dir, file).split('\n').map(parse).filter((e) => e !== undefined));
  return {
    controller,
    file,
    read: readDevices,
    write: (dir, value) => {
      const gone = Object.keys(readDevices(dir)).filter((dev) => !(dev in value));
      for (const text of [...gone.map((dev) => line(dev, undefined)), ...Object.entries(value).map(([dev, bps]) => line(dev, bps))]) writeLimit(path.join(dir, file), text);
    },
  };
}

/** Bytes/s per block device: v1 blkio throttle ("M:m N", 0 removes), v2 io.max ("M:m rbps=N", max removes). */
function ioRow(key: 'ioReadBps' | 'ioWriteBps', field: string, way: 'read' | 'write', v2key: 'rbps' | 'wbps'): Dimension {
  const v1file = `blkio.throttle.${way}_bps_device`;
  return row({
    key,
    field,
    none: Object.freeze({}),
    check: (v) => (Object.keys(v).length > MAX_DEVICES ? `at most ${MAX_DEVICES} devices` : undefined),
    entries: {
      key: (dev) => (DEVICE.test(dev) ? undefined : 'not a block device: "MAJOR:MINOR", e.g. "8:0"'),
      value: (bps) => (!Number.isInteger(bps) || bps < 1 ? 'bytes per second, at least 1' : bps > PIB ? 'more than 1125899906842624 bytes per second' : undefined),
    },
    hostLacks: (v) => {
      const dev = Object.keys(v).find((d) => !fs.existsSync(`/sys/dev/block/${d}`));
      return dev === undefined ? undefined : `this host has no block device ${dev} (no /sys/dev/block/${dev})`;
    },
    v1: deviceSide('blkio', v1file, (dev, bps) => `${dev} ${bps ?? 0}`, (l) => {
      const [dev = '', bps = '0'] = l.split(' ');
      return DEVICE.test(dev) && Number(bps) > 0 ? [dev, Number(bps)] : undefined;
    }),
    // One io.max line holds every key of a device ("254:0 rbps=1048576 wbps=max riops=max wiops=max"): this row's is v2key.
    v2: deviceSide('io', 'io.max', (dev, bps) => `${dev} ${v2key}=${bps ?? 'max'}`, (l) => {
      const [dev = '', ...pairs] = l.split(' ');
      const bps = pairs.find((p) => p.startsWith(`${v2key}=`))?.slice(v2key.length + 1);
      return DEVICE.test(dev) && bps !== undefined && bps !== 'max' ? [dev, Number(bps)] : undefined;
    }),
    // Docker's BlkioDevice*Bps take a /dev path and docker update cannot change them: written to the cgroup after start instead.
  });
}

export const DIMENSIONS: readonly Dimension[] = [
  row({
    key: 'cpus',
    field: 'cpus',
    none: 0,
    check: (v) => (!Number.isFinite(v) ? 'must be a finite number' : v < 0.01 ? 'at least 0.01 cores' : v > 1024 ? 'more than 1024 cores' : undefined),
    v1: {
      controller: 'cpu',
      file: 'cpu.cfs_quota_us',
      write: (dir, v) => {
        writeLimit(path.join(dir, 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
        writeLimit(path.join(dir, 'cpu.cfs_quota_us'), v === 0 ? '-1' : String(Math.round(v * CFS_PERIOD_US)));
      },
      read: (dir) => {
        const q = Number(read(dir, 'cpu.cfs_quota_us'));
        const p = Number(read(dir, 'cpu.cfs_period_us'));
        return q > 0 && p > 0 ? Math.round((q / p) * 1000) / 1000 : 0;
      },
    },
    v2: {
      controller: 'cpu',
      file: 'cpu.max',
      write: (dir, v) => writeLimit(path.join(dir, 'cpu.max'), v === 0 ? `max ${CFS_PERIOD_US}` : `${Math.round(v * CFS_PERIOD_US)} ${CFS_PERIOD_US}`),
      read: (dir) => {
        const [q = 'max', p = String(CFS_PERIOD_US)] = read(dir, 'cpu.max').split(' ');
        return q !== 'max' && q !== '' ? Math.round((Number(q) / Number(p)) * 1000) / 1000 : 0;
      },
    },
    docker: (v) => (v === 0 ? undefined : { NanoCpus: Math.round(v * 1e9) }),
  }),
  row({
    key: 'memoryBytes',
    field: 'memory_bytes',
    none: 0,
    check: checkMemoryBytes,
    v1: { controller: 'memory', file: 'memory.limit_in_bytes', write: writeMemoryV1, read: (dir) => bytesOrNone(read(dir, 'memory.limit_in_bytes')) },
    v2: { controller: 'memory', file: 'memory.max', write: (dir, v) => writeLimit(path.join(dir, 'memory.max'), maxOr(v)), read: (dir) => bytesOrNone(read(dir, 'memory.max')) },
    // Without MemorySwap Docker allows 2x Memory; equal means the limit really limits (and Docker refuses Memory alone on update).
    // Where memory_swap_bytes is named too, its row (later in the table) overrides MemorySwap.
    docker: (v) => (v === 0 ? undefined : { Memory: v, MemorySwap: v }),
  }),
  row({
    key: 'pidsLimit',
    field: 'pids_limit',
    none: 0,
    check: (v) => (v > 4_194_304 ? 'more than 4194304' : undefined),
    v1: { controller: 'pids', file: 'pids.max', write: (dir, v) => writeLimit(path.join(dir, 'pids.max'), maxOr(v)), read: (dir) => bytesOrNone(read(dir, 'pids.max')) },
    v2: { controller: 'pids', file: 'pids.max', write: (dir, v) => writeLimit(path.join(dir, 'pids.max'), maxOr(v)), read: (dir) => bytesOrNone(read(dir, 'pids.max')) },
    docker: (v) => ({ PidsLimit: v === 0 ? -1 : v }),
  }),
  row({
    key: 'cpusetCpus',
    field: 'cpuset_cpus',
    none: '',
    check: checkCpuList,
    v1: cpusetV1('cpuset.cpus'),
    v2: cpusetV2('cpuset.cpus'),
    docker: (v) => (v === '' ? undefined : { CpusetCpus: v }),
  }),
  row({
    key: 'cpusetMems',
    field: 'cpuset_mems',
    none: '',
    check: checkCpuList,
    v1: cpusetV1('cpuset.mems'),
    v2: cpusetV2('cpuset.mems'),
    docker: (v) => (v === '' ? undefined : { CpusetMems: v }),
  }),
  row({
    key: 'cpuWeight',
    field: 'cpu_weight',
    none: 0,
    check: (v) => (!Number.isInteger(v) || v < CPU_WEIGHT.min || v > CPU_WEIGHT.max ? `an integer from ${CPU_WEIGHT.min} to ${CPU_WEIGHT.max}` : undefined),
    v1: {
      controller: 'cpu',
      file: 'cpu.shares',
      write: (dir, v) => writeLimit(path.join(dir, 'cpu.shares'), String(Math.round((v === 0 ? CPU_WEIGHT.default : v) * SHARES_PER_WEIGHT))),
      read: (dir) => {
        const shares = Number(read(dir, 'cpu.shares'));
        const w = Math.round(shares / SHARES_PER_WEIGHT);
        return shares > 0 && w !== CPU_WEIGHT.default ? Math.max(CPU_WEIGHT.min, w) : 0;
      },
    },
    v2: {
      controller: 'cpu',
      file: 'cpu.weight',
      write: (dir, v) => writeLimit(path.join(dir, 'cpu.weight'), String(v === 0 ? CPU_WEIGHT.default : v)),
      read: (dir) => {
        const w = Number(read(dir, 'cpu.weight'));
        return w > 0 && w !== CPU_WEIGHT.default ? w : 0;
      },
    },
    // Docker's CpuShares is exact on v1 only (runc maps it onto v2 weights its own way): written to the cgroup after start instead.
  }),
  row({
    key: 'memoryHighBytes',
    field: 'memory_high_bytes',
    none: 0,
    check: (v) => (v < 1024 * 1024 ? 'at least 1048576 bytes (1 MiB)' : v > PIB ? 'more than 1125899906842624 bytes (1 PiB)' : undefined),
    // v1 has no throttling threshold: its soft limit is what reclaim pushes a group back to under pressure.
    v1: {
      controller: 'memory',
      file: 'memory.soft_limit_in_bytes',
      write: (dir, v) => writeLimit(path.join(dir, 'memory.soft_limit_in_bytes'), v === 0 ? '-1' : String(v)),
      read: (dir) => bytesOrNone(read(dir, 'memory.soft_limit_in_bytes')),
    },
    v2: { controller: 'memory', file: 'memory.high', write: (dir, v) => writeLimit(path.join(dir, 'memory.high'), maxOr(v)), read: (dir) => bytesOrNone(read(dir, 'memory.high')) },
    // Docker's MemoryReservation is memory.low on v2, not memory.high: written to the cgroup after start instead.
  }),
  row({
    // After memory_bytes: its v1 write lifts memsw where it must, then this sets it; its Docker fields are overridden here.
    key: 'memorySwapBytes',
    field: 'memory_swap_bytes',
    none: 0,
    check: checkMemoryBytes,
    against: (v, all) =>
      all.memoryBytes === 0
        ? 'needs memory_bytes (in the same request, or already set): it is memory plus swap'
        : v < all.memoryBytes
          ? `below memory_bytes (${all.memoryBytes}): it is memory plus swap, and equal to memory_bytes means no swap`
          : undefined,
    // What a change of memory alone keeps is the swap allowance (total - memory), as v2's memory.swap.max does by itself; no memory limit, no total.
    follow: {
      of: 'memoryBytes',
      value: (cur, next) =>
        cur.memorySwapBytes === 0 || cur.memoryBytes === 0 || next.memoryBytes === cur.memoryBytes ? undefined : next.memoryBytes === 0 ? 0 : cur.memorySwapBytes + next.memoryBytes - cur.memoryBytes,
    },
    v1: {
      controller: 'memory',
      file: 'memory.memsw.limit_in_bytes',
      write: (dir, v) => writeLimit(path.join(dir, 'memory.memsw.limit_in_bytes'), v === 0 ? '-1' : String(v)),
      read: (dir) => bytesOrNone(read(dir, 'memory.memsw.limit_in_bytes')),
    },
    // v2's memory.swap.max is the swap alone: the total less memory.max (which the memory row, earlier in the table, has written).
    v2: {
      controller: 'memory',
      file: 'memory.swap.max',
      write: (dir, v) => {
        const memory = bytesOrNone(read(dir, 'memory.max'));
        writeLimit(path.join(dir, 'memory.swap.max'), v === 0 || memory === 0 ? 'max' : String(v - memory));
      },
      read: (dir) => {
        const memory = bytesOrNone(read(dir, 'memory.max'));
        const swap = read(dir, 'memory.swap.max');
        return memory === 0 || swap === '' || swap === 'max' ? 0 : memory + Number(swap);
      },
    },
    // Docker's MemorySwap is this total exactly; -1 there is unlimited swap, not "back to none", so a container's cannot be removed.
    docker: (v) => (v === 0 ? undefined : { MemorySwap: v }),
  }),
  ioRow('ioReadBps', 'io_read_bps', 'read', 'rbps'),
  ioRow('ioWriteBps', 'io_write_bps', 'write', 'wbps'),
];

export const NO_LIMITS: Resources = Object.freeze(Object.fromEntries(DIMENSIONS.map((d) => [d.key, d.none])) as unknown as Resources);

/** Limits from the ones given, every other dimension at none. */
export function limits(some: Partial<Resources>): Resources {
  return { ...NO_LIMITS, ...some };
}

type Value = Resources[Limit];

/** Map-valued: one limit per key (per block device). */
export const isMap = (d: Dimension): boolean => d.entries !== undefined;

/** Whether a value is the dimension's none (no limit; a map with no keys); undefined counts as none. */
export function isNone(d: Dimension, v: Value | undefined): boolean {
  return v === undefined || (isMap(d) ? Object.keys(v as DeviceLimits).length === 0 : v === d.none);
}

/** Whether two values are the same limit (maps: the same keys with the same values). */
export function sameValue(d: Dimension, a: Value | undefined, b: Value | undefined): boolean {
  if (!isMap(d)) return (a ?? d.none) === (b ?? d.none);
  const x = (a ?? {}) as DeviceLimits;
  const y = (b ?? {}) as DeviceLimits;
  return Object.keys(x).length === Object.keys(y).length && Object.entries(x).every(([k, v]) => y[k] === v);
}

/** The first dimension whose (set) value does not go with the other limits, and why. */
export function mismatch(all: Resources): { readonly dimension: Dimension; readonly why: string } | undefined {
  for (const d of DIMENSIONS) {
    const why = isNone(d, all[d.key]) ? undefined : d.against?.(all[d.key], all);
    if (why) return { dimension: d, why };
  }
  return undefined;
}

/**
 * The change with what follows from it on an object whose limits are
 * current: a dimension defined relative to another (a swap total over memory)
 * moves with it when the change does not name it. current is asked for (a
 * read of the cgroup files) only when the change moves such another.
 */
export function withFollowers(change: ResourceChange, current: Resources | (() => Resources)): ResourceChange {
  const moved = DIMENSIONS.filter((d) => d.follow && change[d.key] === undefined && change[d.follow.of] !== undefined);
  if (moved.length === 0) return change;
  const now = typeof current === 'function' ? current() : current;
  const next: Resources = { ...now, ...change };
  const out: Record<string, Value> = { ...change };
  for (const d of moved) {
    const v = d.follow?.value(now, next);
    if (v !== undefined) out[d.key] = v;
  }
  return out as ResourceChange;
}

const dirOf = (ref: CgroupRef, d: Dimension): string | undefined => ref.paths[ref.version === 'v2' ? 'unified' : d.v1.controller];
const sideOf = (ref: CgroupRef, d: Dimension): Side<Resources[Limit]> => (ref.version === 'v2' ? d.v2 : d.v1);

/**
 * Why the kernel cannot take dimension d in ref's groups, or undefined: no
 * such controller (v2: not among v2Controllers, what the hierarchy offers,
 * when given), or a group of ref that exists has no such file.
 */
function kernelLacks(ref: CgroupRef, d: Dimension, v2Controllers?: readonly string[]): string | undefined {
  const dir = dirOf(ref, d);
  const side = sideOf(ref, d);
  if (!dir || (ref.version === 'v2' && v2Controllers && !v2Controllers.includes(side.controller))) return `this host has no cgroup ${ref.version} ${side.controller} controller`;
  if (fs.existsSync(dir) && !fs.existsSync(path.join(dir, side.file))) return `this host's kernel has no ${side.file} (cgroup ${ref.version})`;
  return undefined;
}

/** Every dimension the kernel cannot take in ref's groups: API field -> why (kernelLacks). */
export function lackingIn(ref: CgroupRef, v2Controllers?: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const d of DIMENSIONS) {
    const why = kernelLacks(ref, d, v2Controllers);
    if (why) out[d.field] = why;
  }
  return out;
}

/**
 * The dimensions the change names that the object's cgroup cannot take (the
 * kernel has no such controller or file, the host no such device):
 * FAILED_PRECONDITION naming the first, before anything is written. prefix
 * is where the limits sit in the request ("spec.resources" at create,
 * "resources" at update).
 */
export function requireSupported(ref: CgroupRef, change: ResourceChange, prefix: string): void {
  for (const d of DIMENSIONS) {
    const value = change[d.key];
    if (value === undefined) continue;
    const why = kernelLacks(ref, d) ?? d.hostLacks?.(value);
    if (why) throw new FailedPreconditionError(`${prefix}.${d.field}: ${why}`);
  }
}

/** Writes the limits the change names (undefined keeps, none removes) and what follows from them, in table order. */
export function writeLimits(ref: CgroupRef, change: ResourceChange): void {
  const full = withFollowers(change, () => readOver(ref, touched(change), NO_LIMITS));
  for (const d of DIMENSIONS) {
    const value = full[d.key];
    const dir = dirOf(ref, d);
    if (value !== undefined && dir) sideOf(ref, d).write(dir, value);
  }
}

/** Every dimension as the cgroup files hold it now (none where the object has no such file). */
export function readLimits(ref: CgroupRef): Resources {
  return readOver(ref, DIMENSIONS.map((d) => d.key), NO_LIMITS);
}

/** base, with the dimensions of keys as the cgroup files hold them now (none where the object has no such file). */
export function readOver(ref: CgroupRef, keys: readonly Limit[], base: Resources): Resources {
  const out: Record<string, unknown> = { ...base };
  for (const d of DIMENSIONS) {
    if (!keys.includes(d.key)) continue;
    const dir = dirOf(ref, d);
    out[d.key] = dir ? sideOf(ref, d).read(dir) : d.none;
  }
  return out as unknown as Resources;
}

/** The dimensions a change may move: the ones it names, and the ones that follow one of those (swap with memory). */
export function touched(change: ResourceChange): Limit[] {
  return DIMENSIONS.filter((d) => change[d.key] !== undefined || (d.follow !== undefined && change[d.follow.of] !== undefined)).map((d) => d.key);
}

/** Only the limits that are set (not none): what a create asks for. */
export function asked(r: ResourceChange): ResourceChange {
  const out: Record<string, unknown> = {};
  for (const d of DIMENSIONS) if (!isNone(d, r[d.key])) out[d.key] = r[d.key];
  return out as ResourceChange;
}

/**
 * Docker's HostConfig for the limits the change names, where Docker has an
 * exact equivalent (a create passes only the ones set). A change Docker
 * cannot make to an existing container is FAILED_PRECONDITION naming its field.
 */
export function dockerHostConfig(r: ResourceChange): Record<string, unknown> {
  let out: Record<string, unknown> = {};
  for (const d of DIMENSIONS) {
    const v = r[d.key];
    if (v === undefined || !d.docker) continue;
    const fields = d.docker(v);
    if (!fields) throw new FailedPreconditionError(`resources.${d.field}: docker cannot remove this limit from an existing container; set another value`);
    out = { ...out, ...fields };
  }
  return out;
}

/** The limits set in r (not 0, not empty) as Docker's HostConfig fields hold them. */
export function dockerRecordOf(r: Resources): Record<string, unknown> {
  let out: Record<string, unknown> = {};
  for (const d of DIMENSIONS) {
    const v = r[d.key];
    if (v === undefined || v === 0 || v === '' || !d.docker) continue;
    out = { ...out, ...(d.docker(v) ?? {}) };
  }
  return out;
}

/** The dimensions Docker cannot set exactly: the driver writes them to the container's cgroup itself. */
export function notForDocker(r: ResourceChange): ResourceChange {
  const out: Record<string, unknown> = {};
  for (const d of DIMENSIONS) if (!d.docker && r[d.key] !== undefined) out[d.key] = r[d.key];
  return out as ResourceChange;
}

/** One span per cgroup write; a refused write is an error on it. */
export function writeLimit(file: string, value: string): void {
  const span = tracer.startSpan(`cgroup write ${path.basename(file)}`, { attributes: { 'cgroup.file': file, 'cgroup.value': value } });
  try {
    fs.writeFileSync(file, value);
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
    const code = (err as NodeJS.ErrnoException).code;
    // The kernel refuses a limit below current usage (EBUSY) or out of range (EINVAL).
    if (code === 'EBUSY' || code === 'EINVAL') {
      throw new DriverError(DriverNames.Cgroup, `kernel refused ${value} for ${path.basename(file)} (${code}): below current usage or out of range`, { cause: err });
    }
    throw new DriverError(DriverNames.Cgroup, `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    span.end();
  }
}

/**
 * v1 memory limit. The kernel keeps memsw (memory plus swap) at or above it:
 * a limit above a limited memsw lifts memsw to it first (EINVAL otherwise).
 * memsw's own value is the swap row's to set, after this one in the table; a
 * change that moves memory names swap too where it is limited (follow).
 */
function writeMemoryV1(dir: string, bytes: number): void {
  const value = bytes === 0 ? '-1' : String(bytes);
  const memsw = bytesOrNone(read(dir, 'memory.memsw.limit_in_bytes'));
  if (memsw !== 0 && (bytes === 0 || bytes > memsw)) writeLimit(path.join(dir, 'memory.memsw.limit_in_bytes'), value);
  writeLimit(path.join(dir, 'memory.limit_in_bytes'), value);
}
