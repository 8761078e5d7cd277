import * as fs from 'node:fs';
import * as path from 'node:path';
import { DriverError, InvalidArgumentError } from '@agent/grpc-kit';
import { Driver as DriverNames } from '@agent/option';
import { DIMENSIONS, lackingIn, readLimits, readOver, requireSupported, touched, writeLimits } from './dimensions';
import type { CgroupRef, CgroupVersion, ResourceChange, Resources } from './types';

/** The controllers the agent uses on cgroup v1. */
export const V1_CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids', 'blkio', 'cpuset'] as const;
export type V1Controller = (typeof V1_CONTROLLERS)[number];
const V2_CONTROLLERS = ['cpuset', 'cpu', 'memory', 'pids', 'io'] as const;
export const UNIFIED = 'unified';

interface Mount {
  readonly mountPoint: string;
  readonly root: string;
}

/**
 * The host's cgroup hierarchies, as /proc/self/mountinfo shows them, and the
 * file operations on them. v2 is used when a cgroup2 mount has the
 * controllers; otherwise v1 (one mount per controller, or co-mounted).
 */
export class CgroupFs {
  readonly version: CgroupVersion;
  private readonly v1 = new Map<string, Mount>();
  private v2: Mount | undefined;

  constructor(
    /** The agent's own root below each hierarchy, e.g. "agent". */
    readonly parent: string,
    mountinfo: string = safeRead('/proc/self/mountinfo'),
  ) {
    for (const line of mountinfo.split('\n')) {
      const sep = line.indexOf(' - ');
      if (sep < 0) continue;
      const left = line.slice(0, sep).split(' ');
      const right = line.slice(sep + 3).split(' ');
      const root = left[3];
      const mountPoint = left[4];
      const fstype = right[0];
      const superOpts = right[2] ?? '';
      if (root === undefined || mountPoint === undefined) continue;
      if (fstype === 'cgroup') {
        for (const opt of superOpts.split(',')) {
          if ((V1_CONTROLLERS as readonly string[]).includes(opt)) this.v1.set(opt, { mountPoint, root });
        }
      } else if (fstype === 'cgroup2') {
        const controllers = safeRead(path.join(mountPoint, 'cgroup.controllers'));
        if (controllers.includes('memory') || this.v2 === undefined) this.v2 = { mountPoint, root };
      }
    }
    const v2HasControllers = this.v2 !== undefined && safeRead(path.join(this.v2.mountPoint, 'cgroup.controllers')).includes('memory');
    this.version = this.v1.has('memory') && !v2HasControllers ? 'v1' : 'v2';
  }

  /** Is any usable hierarchy mounted? */
  available(): boolean {
    return this.version === 'v1' ? this.v1.size > 0 : this.v2 !== undefined;
  }

  /** The directories of a group named relative to the agent's root. */
  refFor(relative: string): CgroupRef {
    return this.refAt(path.posix.join(this.parent, relative));
  }

  /** The directories of a group named from the hierarchies' root (another manager's: kubelet's pods). */
  refAt(rel: string): CgroupRef {
    if (this.version === 'v2') {
      return { version: 'v2', paths: { [UNIFIED]: path.join(this.mountOf(UNIFIED).mountPoint, rel) } };
    }
    const paths: Record<string, string> = {};
    for (const c of V1_CONTROLLERS) {
      const m = this.v1.get(c);
      if (m) paths[c] = path.join(m.mountPoint, rel);
    }
    return { version: 'v1', paths };
  }

  /** The cgroup directories a running pid belongs to (from /proc/<pid>/cgroup). */
  refForPid(pid: number): CgroupRef {
    const text = safeRead(`/proc/${pid}/cgroup`);
    if (text === '') throw new DriverError(DriverNames.Cgroup, `no cgroup information for pid ${pid}`);
    const paths: Record<string, string> = {};
    for (const line of text.trim().split('\n')) {
      const [, ctrls = '', cgPath = '/'] = line.split(':');
      if (this.version === 'v2') {
        if (ctrls === '' && this.v2) paths[UNIFIED] = this.resolve(this.v2, cgPath);
        continue;
      }
      for (const c of ctrls.split(',')) {
        const m = this.v1.get(c);
        if (m && (V1_CONTROLLERS as readonly string[]).includes(c)) paths[c] = this.resolve(m, cgPath);
      }
    }
    return { version: this.version, paths };
  }

  /**
   * The group's path from its hierarchy's root, as /proc/<pid>/cgroup and
   * cAdvisor's id label name it ("/agent/web", "/docker/<id>"); v1 names the
   * memory controller's group. Empty when the ref is under no known mount.
   */
  nameOf(ref: CgroupRef): string {
    const ctrls = ref.version === 'v2' ? [UNIFIED] : ['memory', 'cpuacct', 'cpu', 'pids', 'blkio'];
    for (const c of ctrls) {
      const dir = ref.paths[c];
      const m = c === UNIFIED ? this.v2 : this.v1.get(c);
      if (dir === undefined || !m) continue;
      const rel = path.relative(m.mountPoint, dir);
      if (rel.startsWith('..') || path.isAbsolute(rel)) continue;
      return path.posix.join(m.root, rel);
    }
    return '';
  }

  /** Creates the group (and the agent's root) in every hierarchy. */
  create(relative: string): CgroupRef {
    const ref = this.refFor(relative);
    if (ref.version === 'v2') this.enableV2Controllers(relative);
    for (const dir of Object.values(ref.paths)) {
      try {
        fs.mkdirSync(dir, { recursive: true });
      } catch (err) {
        throw new DriverError(DriverNames.Cgroup, `cannot create cgroup ${dir}: ${(err as Error).message}`, { cause: err });
      }
    }
    if (ref.paths.cpuset && ref.version === 'v1') this.inheritCpusets(ref.paths.cpuset);
    return ref;
  }

  /** A v1 cpuset starts empty and no task can join it: each level down to dir gets its parent's cpus and mems. */
  private inheritCpusets(dir: string): void {
    const top = this.mountOf('cpuset').mountPoint;
    const chain: string[] = [];
    for (let d = dir; d.startsWith(top + path.sep); d = path.dirname(d)) chain.unshift(d);
    for (const d of chain) {
      for (const file of ['cpuset.cpus', 'cpuset.mems']) {
        if (safeRead(path.join(d, file)).trim() === '') tryWrite(path.join(d, file), safeRead(path.join(path.dirname(d), file)).trim());
      }
    }
  }

  exists(ref: CgroupRef): boolean {
    return Object.values(ref.paths).some((d) => fs.existsSync(d));
  }

  /** The pids in the group (from the first hierarchy that has it). */
  pids(ref: CgroupRef): number[] {
    const seen = new Set<number>();
    for (const dir of Object.values(ref.paths)) {
      for (const p of safeRead(path.join(dir, 'cgroup.procs')).split('\n')) if (p !== '') seen.add(Number(p));
    }
    return [...seen];
  }

  /** Whether pid is in the group in every hierarchy (the launcher joins them one by one). */
  joinedAll(ref: CgroupRef, pid: number): boolean {
    const want = String(pid);
    return [...new Set(Object.values(ref.paths))].every((dir) => safeRead(path.join(dir, 'cgroup.procs')).split('\n').includes(want));
  }

  /** The cgroup.procs files a process must be written to to join the group. */
  procsFiles(ref: CgroupRef): string[] {
    return [...new Set(Object.values(ref.paths))].map((d) => path.join(d, 'cgroup.procs'));
  }

  /**
   * Moves pid into the group in every hierarchy. The agent does this itself
   * (as root) so that the process need not be privileged to join.
   */
  join(ref: CgroupRef, pid: number): void {
    for (const file of this.procsFiles(ref)) {
      try {
        fs.writeFileSync(file, String(pid));
      } catch (err) {
        throw new DriverError(DriverNames.Cgroup, `cannot move pid ${pid} into ${path.dirname(file)}: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  /** Moves any remaining process to the hierarchy root, then removes the group and empty parents up to the agent root. */
  remove(ref: CgroupRef): void {
    for (const [ctrl, dir] of Object.entries(ref.paths)) {
      if (!fs.existsSync(dir)) continue;
      const mount = this.mountOf(ctrl);
      for (const pid of safeRead(path.join(dir, 'cgroup.procs')).split('\n')) {
        if (pid !== '') tryWrite(path.join(mount.mountPoint, 'cgroup.procs'), pid);
      }
      const stop = path.join(mount.mountPoint, this.parent);
      for (let d = dir; d.startsWith(stop + path.sep); d = path.dirname(d)) {
        try {
          fs.rmdirSync(d);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') continue;
          if (d === dir) throw new DriverError(DriverNames.Cgroup, `cannot remove cgroup ${d}: ${(err as Error).message}`, { cause: err });
          break; // a parent still in use by another group
        }
      }
    }
  }

  /**
   * Writes the limits that the change names (undefined keeps, none removes),
   * after checking the kernel has every one: a dimension it lacks is
   * FAILED_PRECONDITION naming prefix.<field>, and nothing is written.
   */
  applyLimits(ref: CgroupRef, change: ResourceChange, prefix = 'resources'): void {
    requireSupported(ref, change, prefix);
    writeLimits(ref, change);
  }

  /**
   * The dimensions this host's kernel cannot give a group below the agent's
   * root: API field -> why (no such controller, or no such file where the
   * root exists). With no hierarchy mounted, every one.
   */
  lacking(): Record<string, string> {
    if (!this.available()) return Object.fromEntries(DIMENSIONS.map((d) => [d.field, 'this host has no cgroup hierarchy mounted']));
    const ref = this.refFor('');
    return lackingIn(ref, this.v2 && ref.version === 'v2' ? safeRead(path.join(this.v2.mountPoint, 'cgroup.controllers')).split(/\s+/) : undefined);
  }

  /** The limits as the cgroup files hold them now. */
  readLimits(ref: CgroupRef): Resources {
    return readLimits(ref);
  }

  /**
   * The limits after a change: what the object held (applied), with the
   * dimensions the change may have moved read again from the files. A limit
   * changed outside the agent meanwhile shows at the next full read (inspect).
   */
  readAfter(ref: CgroupRef, applied: Resources, change: ResourceChange): Resources {
    return readOver(ref, touched(change), applied);
  }

  private mountOf(ctrl: string): Mount {
    const m = ctrl === UNIFIED ? this.v2 : this.v1.get(ctrl);
    if (!m) throw new DriverError(DriverNames.Cgroup, `cgroup controller ${ctrl} is not mounted`);
    return m;
  }

  private resolve(m: Mount, cgPath: string): string {
    const rel = m.root !== '/' && cgPath.startsWith(m.root) ? cgPath.slice(m.root.length) : cgPath;
    return path.join(m.mountPoint, rel);
  }

  /** v2 only lets a child use a controller its parents delegate to it. */
  private enableV2Controllers(relative: string): void {
    const m = this.mountOf(UNIFIED);
    const chain = path.posix.join(this.parent, relative).split('/');
    let dir = m.mountPoint;
    for (const part of chain.slice(0, -1)) {
      const available = safeRead(path.join(dir, 'cgroup.controllers')).split(/\s+/);
      const wanted = V2_CONTROLLERS.filter((c) => available.includes(c)).map((c) => `+${c}`);
      if (wanted.length > 0) tryWrite(path.join(dir, 'cgroup.subtree_control'), wanted.join(' '));
      dir = path.join(dir, part);
      fs.mkdirSync(dir, { recursive: true });
    }
    const available = safeRead(path.join(dir, 'cgroup.controllers')).split(/\s+/);
    const wanted = V2_CONTROLLERS.filter((c) => available.includes(c)).map((c) => `+${c}`);
    if (wanted.length > 0) tryWrite(path.join(dir, 'cgroup.subtree_control'), wanted.join(' '));
  }
}

/** Sums rbytes/wbytes over the devices of a v2 io.stat. */
export function parseIoStat(text: string): { read: number; write: number } {
  let read = 0;
  let write = 0;
  for (const line of text.split('\n')) {
    const r = /rbytes=(\d+)/.exec(line);
    const w = /wbytes=(\d+)/.exec(line);
    if (r?.[1]) read += Number(r[1]);
    if (w?.[1]) write += Number(w[1]);
  }
  return { read, write };
}

/** Sums Read/Write over the devices of a v1 blkio.throttle.io_service_bytes. */
export function parseBlkioV1(text: string): { read: number; write: number } | undefined {
  if (text === '') return undefined;
  let read = 0;
  let write = 0;
  for (const line of text.split('\n')) {
    const parts = line.split(' ');
    if (parts.length !== 3) continue;
    if (parts[1] === 'Read') read += Number(parts[2]);
    else if (parts[1] === 'Write') write += Number(parts[2]);
  }
  return { read, write };
}

export function safeRead(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function tryWrite(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch {
    /* best effort: the caller checks the outcome by reading back */
  }
}

/** A relative cgroup path: no "..", not absolute, plain characters, bounded depth. */
export function checkRelativeCgroupPath(field: string, p: string): void {
  if (p === '') throw new InvalidArgumentError(field, 'must not be empty');
  if (p.length > 255) throw new InvalidArgumentError(field, 'longer than 255 characters');
  if (p.startsWith('/')) throw new InvalidArgumentError(field, 'must be relative to the agent cgroup root, not absolute');
  const parts = p.split('/');
  if (parts.some((s) => s === '..')) throw new InvalidArgumentError(field, 'must not escape the agent cgroup root with ".."');
  if (parts.some((s) => s === '' || s === '.')) throw new InvalidArgumentError(field, 'must not have empty or "." segments');
  if (parts.length > 8) throw new InvalidArgumentError(field, 'deeper than 8 levels');
  if (!parts.every((s) => /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(s))) {
    throw new InvalidArgumentError(field, 'segments may hold only letters, digits, "_", "-" and "."');
  }
  if (parts.some((s) => /^(cgroup|memory|cpu|cpuacct|pids|blkio|io|notify_on_release|tasks)\b/.test(s) && s.includes('.'))) {
    throw new InvalidArgumentError(field, 'a segment must not look like a cgroup control file');
  }
}
