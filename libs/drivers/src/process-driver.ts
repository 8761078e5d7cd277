import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Driver as DriverNames, type DriverName } from '@agent/option';
import { trace } from '@opentelemetry/api';
import { DriverError, NotFoundError } from '@agent/grpc-kit';
import { BaseDriver, WORKLOAD_CAPABILITIES, type Capabilities } from './driver';
import type { CgroupDriver } from './cgroup-driver';
import { safeRead } from './cgroup-fs';
import { isAlive, processStartTime } from './proc-figures';
import type { Figures, ResourceChange, Runtime, RuntimeListener, WorkloadSpec } from './types';

/**
 * Joins the cgroup, then execs the user's argv. The argv is passed as
 * arguments, never parsed by the shell, so no instruction of the command runs
 * outside its limits and nothing is shell-interpreted.
 */
const LAUNCHER = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 126; shift; n=$((n-1)); done; exec "$@"';

export interface ProcessDriverOptions {
  /** Where each process's stdout and stderr go: <logDir>/<objectId>.log */
  readonly logDir: string;
  /** Default working directory. */
  readonly defaultCwd: string;
  /** SIGTERM to SIGKILL. */
  readonly stopGraceMs: number;
}

/** Plain processes, each in its own cgroup so that limits apply and nothing escapes on delete. */
export class ProcessDriver extends BaseDriver {
  readonly name: DriverName = DriverNames.Process;
  readonly capabilities: Capabilities = WORKLOAD_CAPABILITIES;

  private readonly listeners = new Set<RuntimeListener>();

  constructor(
    private readonly cgroups: CgroupDriver,
    private readonly opts: ProcessDriverOptions,
  ) {
    super();
  }

  override watch(listener: RuntimeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  health(): Promise<void> {
    return this.cgroups.health();
  }

  override async create(spec: WorkloadSpec): Promise<Runtime> {
    const proc = spec.process;
    if (!proc) throw new DriverError(this.name, 'spec has no process');
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' };
    for (const kv of proc.env) {
      const i = kv.indexOf('=');
      env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    const [exe, ...args] = proc.command;
    if (exe === undefined) throw new DriverError(this.name, 'empty command');
    const resolved = resolveExecutable(exe, env.PATH ?? '');
    if (resolved === undefined) throw new DriverError(this.name, `executable not found: ${exe}`);
    const cwd = proc.cwd || this.opts.defaultCwd;
    if (!proc.cwd) fs.mkdirSync(cwd, { recursive: true });
    if (!isDirectory(cwd)) throw new DriverError(this.name, `working directory does not exist: ${cwd}`);

    const rel = `proc-${spec.objectId}`;
    const ref = this.cgroups.fs.create(rel);
    let logFd: number | undefined;
    try {
      this.cgroups.fs.applyLimits(ref, spec.resources);
      fs.mkdirSync(this.opts.logDir, { recursive: true });
      logFd = fs.openSync(path.join(this.opts.logDir, `${spec.objectId}.log`), 'a');
      const files = this.cgroups.fs.procsFiles(ref);
      const child = spawn('/bin/sh', ['-c', LAUNCHER, 'agent-launch', String(files.length), ...files, resolved, ...args], {
        cwd,
        env,
        detached: true, // own process group; survives the agent
        stdio: ['ignore', logFd, logFd],
      });
      const pid = await new Promise<number>((resolve, reject) => {
        child.once('error', (err) => reject(new DriverError(this.name, `spawn failed: ${err.message}`, { cause: err })));
        child.once('spawn', () => resolve(child.pid ?? 0));
      });
      child.unref();
      trace.getActiveSpan()?.setAttribute('process.pid', pid);
      await this.waitJoined(ref, pid, child);
      const runtimeId = `${this.cgroups.fs.parent}/${rel}`;
      // The agent is the parent while it runs: it reaps the process and says so.
      child.once('exit', (code, signal) => {
        const reason = signal ? `killed by ${signal}` : `exited with code ${code ?? 0}`;
        for (const l of this.listeners) l({ objectId: spec.objectId, runtimeId, running: false, reason, pid });
      });
      return { runtimeId, pid, cgroup: ref, applied: this.cgroups.fs.readLimits(ref), running: true, startTime: processStartTime(pid) };
    } catch (err) {
      await this.killGroup(ref);
      this.cgroups.fs.remove(ref);
      throw err;
    } finally {
      if (logFd !== undefined) fs.closeSync(logFd);
    }
  }

  /** The launcher joins the cgroup (every hierarchy), then execs; wait until it has, or failed. */
  private async waitJoined(ref: Runtime['cgroup'], pid: number, child: ReturnType<typeof spawn>): Promise<void> {
    let exitCode: number | null = null;
    child.once('exit', (code) => (exitCode = code ?? -1));
    const deadline = Date.now() + 2_000;
    while (Date.now() < deadline) {
      // Joined every hierarchy, and the launcher has become the command (its argv is gone).
      if (this.cgroups.fs.joinedAll(ref, pid) && !safeRead(`/proc/${pid}/cmdline`).includes('\0agent-launch\0')) return;
      if (exitCode !== null) {
        throw new DriverError(this.name, exitCode === 126 ? 'could not join the cgroup' : `process exited at once with code ${exitCode}`);
      }
      await sleep(2);
    }
    throw new DriverError(this.name, 'process did not join its cgroup and start within 2 s');
  }

  override async update(rt: Runtime, change: ResourceChange): Promise<Runtime> {
    return this.cgroups.update(rt, change);
  }

  /**
   * A process is the one recorded only if its pid is alive with the same start
   * time (pids are reused). It is no longer the agent's child, so its exit is
   * noticed by polling.
   */
  override async adopt(spec: WorkloadSpec, rt: Runtime | undefined): Promise<Runtime> {
    if (!rt) throw new NotFoundError(`process of ${spec.objectId} was never started`);
    if (!this.cgroups.fs.exists(rt.cgroup)) throw new NotFoundError(`cgroup of ${spec.objectId} is gone`);
    const same = isAlive(rt.pid) && rt.startTime !== undefined && processStartTime(rt.pid) === rt.startTime;
    const adopted = { ...rt, running: same, applied: this.cgroups.fs.readLimits(rt.cgroup) };
    if (same) this.pollExit(spec.objectId, adopted);
    return adopted;
  }

  private pollExit(objectId: string, rt: Runtime): void {
    const timer = setInterval(() => {
      if (isAlive(rt.pid) && processStartTime(rt.pid) === rt.startTime) return;
      clearInterval(timer);
      for (const l of this.listeners) l({ objectId, runtimeId: rt.runtimeId, running: false, reason: 'exited (while not the agent\'s child: code unknown)', pid: rt.pid });
    }, 1_000);
    timer.unref();
  }

  override async remove(rt: Runtime): Promise<void> {
    await this.killGroup(rt.cgroup, rt.pid);
    this.cgroups.fs.remove(rt.cgroup);
  }

  override async inspect(rt: Runtime): Promise<Runtime> {
    const exists = this.cgroups.fs.exists(rt.cgroup);
    return {
      ...rt,
      running: isAlive(rt.pid),
      applied: exists ? this.cgroups.fs.readLimits(rt.cgroup) : rt.applied,
    };
  }

  override stats(rt: Runtime): Figures {
    return this.cgroups.stats(rt);
  }

  /** SIGTERM everything in the group, SIGKILL what is left after the grace period. */
  private async killGroup(ref: Runtime['cgroup'], mainPid = 0): Promise<void> {
    const alive = (): number[] => {
      const pids = new Set(this.cgroups.fs.pids(ref));
      if (mainPid > 0 && isAlive(mainPid)) pids.add(mainPid);
      return [...pids];
    };
    const signal = (sig: NodeJS.Signals): void => {
      for (const pid of alive()) {
        try {
          process.kill(pid, sig);
        } catch {
          /* already gone */
        }
      }
    };
    if (alive().length === 0) return;
    signal('SIGTERM');
    const deadline = Date.now() + this.opts.stopGraceMs;
    while (alive().length > 0 && Date.now() < deadline) await sleep(10);
    for (let i = 0; i < 100 && alive().length > 0; i++) {
      signal('SIGKILL');
      await sleep(10);
    }
    if (alive().length > 0) throw new DriverError(this.name, `processes ${alive().join(', ')} survived SIGKILL`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isExecutableFile(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Like execvp's search, done up front so that a missing binary fails the create, not later. */
export function resolveExecutable(exe: string, searchPath: string): string | undefined {
  if (exe.includes('/')) return isExecutableFile(exe) ? path.resolve(exe) : undefined;
  for (const dir of searchPath.split(':')) {
    if (dir === '') continue;
    const candidate = path.join(dir, exe);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}
