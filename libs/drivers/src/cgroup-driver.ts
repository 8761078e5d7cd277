import { Driver as DriverNames, type DriverName } from '@agent/option';
import { DriverError, NotFoundError, UnavailableError } from '@agent/grpc-kit';
import { BaseDriver, WORKLOAD_CAPABILITIES, type Capabilities } from './driver';
import { CgroupFs } from './cgroup-fs';
import { FigureReader } from './figure-reader';
import { netDevPath } from './proc-figures';
import type { Figures, ResourceChange, Runtime, WorkloadSpec } from './types';

/**
 * Bare cgroups below the agent's root, and the one place figures are read:
 * straight from the cgroup files, never through the Docker stats API.
 */
export class CgroupDriver extends BaseDriver {
  readonly name: DriverName = DriverNames.Cgroup;
  // A bare cgroup has no process of its own to stop or start.
  readonly capabilities: Capabilities = { ...WORKLOAD_CAPABILITIES, events: false };

  constructor(readonly fs: CgroupFs) {
    super();
  }

  health(): Promise<void> {
    return this.fs.available() ? Promise.resolve() : Promise.reject(new UnavailableError('no cgroup hierarchy is mounted'));
  }

  override async create(spec: WorkloadSpec): Promise<Runtime> {
    const rel = spec.cgroup?.path;
    if (rel === undefined) throw new DriverError(this.name, 'spec has no cgroup');
    const ref = this.fs.refFor(rel);
    if (this.fs.exists(ref)) throw new DriverError(this.name, `cgroup ${rel} already exists below ${this.fs.parent}`);
    this.fs.create(rel);
    try {
      this.fs.applyLimits(ref, spec.resources);
    } catch (err) {
      this.fs.remove(ref);
      throw err;
    }
    return { runtimeId: `${this.fs.parent}/${rel}`, pid: 0, cgroup: ref, applied: this.fs.readLimits(ref), running: true };
  }

  override async update(rt: Runtime, change: ResourceChange): Promise<Runtime> {
    this.fs.applyLimits(rt.cgroup, change);
    return { ...rt, applied: this.fs.readLimits(rt.cgroup) };
  }

  override async remove(rt: Runtime): Promise<void> {
    this.fs.remove(rt.cgroup);
  }

  /** The object's path below the agent's root is its only mark: removed if it exists. */
  override async purge(spec: WorkloadSpec): Promise<void> {
    const rel = spec.cgroup?.path;
    if (rel === undefined) throw new DriverError(this.name, 'spec has no cgroup');
    const ref = this.fs.refFor(rel);
    if (this.fs.exists(ref)) this.fs.remove(ref);
  }

  override async inspect(rt: Runtime): Promise<Runtime> {
    const exists = this.fs.exists(rt.cgroup);
    return { ...rt, running: exists, applied: exists ? this.fs.readLimits(rt.cgroup) : rt.applied };
  }

  override async adopt(spec: WorkloadSpec, rt: Runtime | undefined): Promise<Runtime> {
    const rel = spec.cgroup?.path;
    if (rel === undefined) throw new DriverError(this.name, 'spec has no cgroup');
    const ref = rt?.cgroup ?? this.fs.refFor(rel);
    if (!this.fs.exists(ref)) throw new NotFoundError(`cgroup ${this.fs.parent}/${rel} is gone`);
    return { runtimeId: `${this.fs.parent}/${rel}`, pid: 0, cgroup: ref, applied: this.fs.readLimits(ref), running: true };
  }

  /** One sample; for repeated sampling keep a reader open instead (openReader). */
  override stats(rt: Runtime): Figures {
    const reader = this.openReader(rt.cgroup, rt.pid);
    try {
      return reader.read();
    } finally {
      reader.close();
    }
  }

  /** For repeated sampling: the object's stats files kept open. Close it when done. */
  openReader(ref: Runtime['cgroup'], pid: number): FigureReader {
    return new FigureReader(ref, netDevPath(pid));
  }
}
