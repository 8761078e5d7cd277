import { Driver as DriverNames, type DriverName } from '@agent/option';
import { DriverError, NotFoundError, UnavailableError } from '@agent/grpc-kit';
import { BaseDriver, WORKLOAD_CAPABILITIES, type Capabilities, type Sampler } from './driver';
import { checkRelativeCgroupPath, CgroupFs } from './cgroup-fs';
import { FigureReader } from './figure-reader';
import { netDevPath } from './proc-figures';
import { asked } from './dimensions';
import { fail } from './spec-checks';
import type { ResourceChange, Runtime, WorkloadSpec } from './types';

/** KIND_CGROUP's part of a spec (agent.v1.CgroupSpec). */
export interface CgroupWorkload {
  /** Relative to the agent's cgroup root. */
  readonly path: string;
}

/** Syntax checks of a cgroup spec at field (e.g. "spec.cgroup"). */
export function validateCgroup(c: CgroupWorkload, field: string): void {
  checkRelativeCgroupPath(`${field}.path`, c.path);
  // Process objects live in proc-<object id>: a cgroup object there would be inside one of them.
  if (c.path.startsWith('proc-')) fail(`${field}.path`, 'names beginning with "proc-" are reserved for the cgroups of process objects');
}

/** A bare cgroup has no process of its own to stop or start. */
export const CGROUP_CAPABILITIES: Capabilities = { ...WORKLOAD_CAPABILITIES, events: false };

/**
 * Bare cgroups below the agent's root, and the one place figures are read:
 * straight from the cgroup files, never through the Docker stats API.
 */
export class CgroupDriver extends BaseDriver<CgroupWorkload> {
  readonly name: DriverName = DriverNames.Cgroup;
  readonly capabilities: Capabilities = CGROUP_CAPABILITIES;

  constructor(readonly fs: CgroupFs) {
    super();
  }

  health(): Promise<void> {
    return this.fs.available() ? Promise.resolve() : Promise.reject(new UnavailableError('no cgroup hierarchy is mounted'));
  }

  /** Every workload that lives in a cgroup of this host can have what its kernel has. */
  override unsupportedLimits(): Readonly<Record<string, string>> {
    return this.fs.lacking();
  }

  override async create(spec: WorkloadSpec<CgroupWorkload>): Promise<Runtime> {
    const rel = spec.workload.path;
    const ref = this.fs.refFor(rel);
    if (this.fs.exists(ref)) throw new DriverError(this.name, `cgroup ${rel} already exists below ${this.fs.parent}`);
    this.fs.create(rel);
    try {
      this.fs.applyLimits(ref, asked(spec.resources), 'spec.resources');
    } catch (err) {
      this.fs.remove(ref);
      throw err;
    }
    return { runtimeId: `${this.fs.parent}/${rel}`, pid: 0, cgroup: ref, applied: this.fs.readLimits(ref), running: true };
  }

  override async update(rt: Runtime, change: ResourceChange): Promise<Runtime> {
    this.fs.applyLimits(rt.cgroup, change);
    return { ...rt, applied: this.fs.readAfter(rt.cgroup, rt.applied, change) };
  }

  override async remove(rt: Runtime): Promise<void> {
    this.fs.remove(rt.cgroup);
  }

  /** The object's path below the agent's root is its only mark: removed if it exists. */
  override async purge(spec: WorkloadSpec<CgroupWorkload>): Promise<void> {
    const rel = spec.workload.path;
    const ref = this.fs.refFor(rel);
    if (this.fs.exists(ref)) this.fs.remove(ref);
  }

  override async inspect(rt: Runtime): Promise<Runtime> {
    const exists = this.fs.exists(rt.cgroup);
    return { ...rt, running: exists, applied: exists ? this.fs.readLimits(rt.cgroup) : rt.applied };
  }

  override async adopt(spec: WorkloadSpec<CgroupWorkload>, rt: Runtime | undefined): Promise<Runtime> {
    const rel = spec.workload.path;
    const ref = rt?.cgroup ?? this.fs.refFor(rel);
    if (!this.fs.exists(ref)) throw new NotFoundError(`cgroup ${this.fs.parent}/${rel} is gone`);
    return { runtimeId: `${this.fs.parent}/${rel}`, pid: 0, cgroup: ref, applied: this.fs.readLimits(ref), running: true };
  }

  /**
   * The one place figures are read, for every driver whose workloads live in
   * a cgroup: the object's stats files (and its network namespace's, by pid)
   * kept open.
   */
  override sampler(rt: Runtime): Sampler {
    return new FigureReader(rt.cgroup, netDevPath(rt.pid));
  }
}
