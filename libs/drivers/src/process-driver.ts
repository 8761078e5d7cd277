import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { Driver as DriverNames, type DriverName } from '@agent/option';
import { trace } from '@opentelemetry/api';
import { DriverError, NotFoundError, openPrivateFile, privateDir } from '@agent/grpc-kit';
import { BaseDriver, WORKLOAD_CAPABILITIES, type Capabilities, type Sampler } from './driver';
import type { CgroupDriver } from './cgroup-driver';
import { safeRead } from './cgroup-fs';
import { checkAllowedExecutable } from './exec-policy';
import { AGENT_PATH, resolveExecutable, searchPathOf } from './executables';
import { LogFiles } from './log-rotation';
import { isSameProcess, parentPid, processStartTime } from './proc-figures';
import { asked } from './dimensions';
import { checkArgv, checkEnv, fail, maxLen, redactEnv, SPEC_LIMITS } from './spec-checks';
import type { ResourceChange, Runtime, RuntimeListener, WorkloadSpec } from './types';
import { resolveUser, type ResolvedUser } from './users';

/** KIND_PROCESS's part of a spec (agent.v1.ProcessSpec). */
export interface ProcessWorkload {
  readonly command: readonly string[];
  readonly env: readonly string[];
  readonly cwd: string;
  /** "name", "uid", "uid:gid", "name:group" or "uid:group"; empty: the driver's default user. */
  readonly user: string;
}

/** Syntax checks of a process spec at field (e.g. "spec.process"). */
export function validateProcess(p: ProcessWorkload, field: string): void {
  checkArgv(`${field}.command`, p.command, true);
  checkEnv(`${field}.env`, p.env);
  maxLen(`${field}.cwd`, p.cwd, SPEC_LIMITS.cwdLength);
  if (p.cwd !== '' && !p.cwd.startsWith('/')) fail(`${field}.cwd`, 'must be an absolute path');
}

/** Who may run what: AGENT_PROCESS_USER and AGENT_PROCESS_ALLOW. */
export interface ProcessPolicy {
  /** Who runs a process whose spec names nobody. */
  readonly processUser: string;
  /** Executables or directories; empty allows any. */
  readonly processAllow: readonly string[];
}

/**
 * Host checks of a process spec, answered at once rather than as a failed
 * create: the user must exist (INVALID_ARGUMENT), the executable must be
 * allowed (PERMISSION_DENIED). The spec comes back with its user filled in,
 * so that Get shows who the process runs as.
 */
export function admitProcess<P extends ProcessWorkload>(p: P, policy: ProcessPolicy): P {
  const user = p.user === '' ? policy.processUser : p.user;
  maxLen('spec.process.user', user, SPEC_LIMITS.nameLength);
  resolveUser(user);
  const exe = resolveExecutable(p.command[0] ?? '', searchPathOf(p.env));
  if (exe !== undefined) checkAllowedExecutable(policy.processAllow, exe);
  return { ...p, user };
}

/** A process as a reader sees it: its variables' names, not their values. */
export function redactProcess<P extends ProcessWorkload>(p: P): P {
  return { ...p, env: redactEnv(p.env) };
}

/**
 * Runs as the target user, already moved into the object's cgroup by the agent:
 * it waits for "go" on fd 3 (the agent sends it only once the move is done),
 * enters the working directory as that user (so the kernel decides access),
 * exports the caller's env and execs the argv. Nothing is parsed by the shell,
 * and loader variables (LD_PRELOAD...) are set only for the final exec, never
 * for /bin/sh. After the exports only positional parameters are used: an env
 * entry cannot redirect the loop, which ends at the "--" no entry can equal
 * (each holds "="). The shell's own PWD and OLDPWD are dropped, so the
 * command's env is exactly PATH plus the caller's. Right before the exec it
 * writes one byte on fd 4: from then on, any exit is the command's own (and
 * the object STOPPED with its status); an exit before it is the agent's
 * failure to start it (FAILED), whatever the timing.
 */
const LAUNCHER = [
  'IFS= read -r go <&3 && [ "$go" = go ] || exit 126',
  'exec 3<&-',
  'umask 022',
  'cd -- "$1" || exit 125',
  'unset PWD OLDPWD',
  'shift',
  'while [ "$1" != -- ]; do export "$1"; shift; done',
  'shift',
  '[ -x "$1" ] || exit 124',
  'printf x >&4 && exec 4>&-',
  'exec "$@"',
].join('; ');
/** The launcher's $0: while /proc/<pid>/cmdline holds it, the command has not been exec'd yet. */
const LAUNCH_MARK = 'agent-launch';
const EXIT_NO_GO = 126;
const EXIT_NO_CWD = 125;
const EXIT_NO_EXEC = 124;

export interface ProcessDriverOptions {
  /** Where each process's stdout and stderr go: <logDir>/<objectId>.log */
  readonly logDir: string;
  /** Default working directory. */
  readonly defaultCwd: string;
  /** SIGTERM to SIGKILL. */
  readonly stopGraceMs: number;
  /** Who a process runs as when its spec names nobody (AGENT_PROCESS_USER). */
  readonly defaultUser: string;
  /** AGENT_PROCESS_ALLOW: executables or directories; empty: any executable. */
  readonly allow: readonly string[];
  /** AGENT_PROCESS_LOG_MAX_BYTES: a log over it is rotated to <log>.1; 0 or absent: no cap. */
  readonly logMaxBytes?: number;
}

/** Processes: cgroup limits and figures, and their exits as events. */
export const PROCESS_CAPABILITIES: Capabilities = WORKLOAD_CAPABILITIES;

/** Plain processes, each in its own cgroup so that limits apply and nothing escapes on delete. */
export class ProcessDriver extends BaseDriver<ProcessWorkload> {
  readonly name: DriverName = DriverNames.Process;
  readonly capabilities: Capabilities = PROCESS_CAPABILITIES;

  private readonly listeners = new Set<RuntimeListener>();
  private readonly logs: LogFiles;

  constructor(
    private readonly cgroups: CgroupDriver,
    private readonly opts: ProcessDriverOptions,
  ) {
    super();
    this.logs = new LogFiles({ maxBytes: opts.logMaxBytes ?? 0 });
  }

  override watch(listener: RuntimeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  health(): Promise<void> {
    return this.cgroups.health();
  }

  /** Its workloads live in cgroups of this host. */
  override unsupportedLimits(): Readonly<Record<string, string>> {
    return this.cgroups.unsupportedLimits();
  }


  override async create(spec: WorkloadSpec<ProcessWorkload>): Promise<Runtime> {
    const proc = spec.workload;
    const user = this.user(proc.user);
    // The launcher exports each entry: one without NAME= must never reach it, whoever called.
    checkEnv('spec.process.env', proc.env);
    const [name, ...args] = proc.command;
    if (name === undefined) throw new DriverError(this.name, 'empty command');
    const resolved = resolveExecutable(name, searchPathOf(proc.env));
    if (resolved === undefined) throw new DriverError(this.name, `executable not found: ${name}`);
    // Under an allowlist the real path that was checked is what runs: a symlink swapped after the check changes nothing.
    const exe = this.opts.allow.length > 0 ? realExecutable(resolved) : resolved;
    checkAllowedExecutable(this.opts.allow, exe);
    const cwd = proc.cwd || this.opts.defaultCwd;
    if (!proc.cwd) fs.mkdirSync(cwd, { recursive: true });
    if (!isDirectory(cwd)) throw new DriverError(this.name, `working directory does not exist: ${cwd}`);

    const rel = cgroupName(spec.objectId);
    const ref = this.cgroups.fs.create(rel);
    let logFd: number | undefined;
    let pid = 0;
    let startTime: number | undefined;
    try {
      this.cgroups.fs.applyLimits(ref, asked(spec.resources), 'spec.resources');
      logFd = this.openLog(spec.objectId);
      this.logs.watch(this.logFile(spec.objectId));
      const child = spawn('/bin/sh', ['-c', LAUNCHER, LAUNCH_MARK, cwd, ...proc.env, '--', exe, ...args], {
        cwd: '/', // the launcher enters the real one as the user
        env: { PATH: AGENT_PATH }, // nothing of the caller's reaches /bin/sh
        uid: user.uid,
        gid: user.gid, // libuv also drops the supplementary groups
        detached: true, // own process group; survives the agent
        stdio: ['ignore', logFd, logFd, 'pipe', 'pipe'],
      });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      pid = await new Promise<number>((resolve, reject) => {
        child.once('error', (err) => reject(new DriverError(this.name, `spawn failed: ${err.message}`, { cause: err })));
        child.once('spawn', () => resolve(child.pid ?? 0));
      });
      startTime = processStartTime(pid); // taken at once, before the pid can be reused; exec keeps it
      child.unref();
      trace.getActiveSpan()?.setAttribute('process.pid', pid);
      const gate = child.stdio[3] as Writable | null | undefined;
      const ready = readyByte(child.stdio[4] as Readable | null | undefined);
      if (!gate) throw new DriverError(this.name, 'launcher has no control pipe');
      gate.on('error', () => undefined); // the launcher died: its exit says why
      try {
        this.cgroups.fs.join(ref, pid);
      } catch (err) {
        gate.destroy(); // no "go": the launcher exits 126 without running anything
        throw new DriverError(this.name, `could not join the cgroup: ${(err as Error).message}`, { cause: err });
      }
      gate.end('go\n', () => gate.destroy());
      await this.waitStarted(ready, exited, { exe, user: user.spec, cwd });
      await waitExec(pid, exited);
      const runtimeId = `${this.cgroups.fs.parent}/${rel}`;
      // The agent is the parent while it runs: it reaps the process and says how it ended, once
      // create has returned (an exit right after the exec is news about a created object).
      void exited.then(({ code, signal }) =>
        setImmediate(() => {
          const reason = signal ? `killed by ${signal}` : `exited with code ${code ?? 0}`;
          const exitCode = signal ? 128 + (os.constants.signals[signal] ?? 0) : (code ?? 0);
          for (const l of this.listeners) l({ objectId: spec.objectId, runtimeId, running: false, reason, pid, exitCode });
        }),
      );
      return { runtimeId, pid, cgroup: ref, applied: this.cgroups.fs.readLimits(ref), running: true, startTime };
    } catch (err) {
      await this.killGroup(ref, { pid, startTime });
      this.cgroups.fs.remove(ref);
      this.logs.remove(this.logFile(spec.objectId));
      throw err;
    } finally {
      if (logFd !== undefined) fs.closeSync(logFd);
    }
  }

  /** The spec's user, or the default; a bad default is the agent's fault, not the caller's. */
  private user(specUser: string): ResolvedUser {
    if (specUser !== '') return resolveUser(specUser);
    try {
      return resolveUser(this.opts.defaultUser);
    } catch (err) {
      throw new DriverError(this.name, `default user AGENT_PROCESS_USER=${JSON.stringify(this.opts.defaultUser)} for ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * The log is private to root (dir 0700, file 0600); the process writes it
   * through the descriptor it is given, whoever it runs as.
   */
  private openLog(objectId: string): number {
    privateDir(this.opts.logDir);
    return openPrivateFile(this.logFile(objectId));
  }

  private logFile(objectId: string): string {
    return path.join(this.opts.logDir, `${objectId}.log`);
  }

  /**
   * The agent has moved the launcher into the cgroup and said "go": the
   * command is started once the launcher writes its byte, right before the
   * exec. An exit without it is a failure to start, with the launcher's reason.
   */
  private async waitStarted(
    ready: Promise<boolean>,
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
    ctx: { readonly exe: string; readonly user: string; readonly cwd: string },
  ): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), START_TIMEOUT_MS)));
    try {
      const started = await Promise.race([ready, late]);
      if (started === true) return;
      if (started === 'late') throw new DriverError(this.name, `process did not start within ${START_TIMEOUT_MS} ms`);
      const end = await Promise.race([exited, late]);
      if (end === 'late') throw new DriverError(this.name, `process did not start within ${START_TIMEOUT_MS} ms`);
      if (end.code === EXIT_NO_CWD) throw new DriverError(this.name, `working directory ${ctx.cwd} not accessible to user ${ctx.user}`);
      if (end.code === EXIT_NO_EXEC) throw new DriverError(this.name, `cannot execute ${ctx.exe} as user ${ctx.user}`);
      if (end.code === EXIT_NO_GO) throw new DriverError(this.name, 'the launcher was not told to go (could not join the cgroup)');
      throw new DriverError(this.name, `the launcher ended before starting ${ctx.exe} (${end.signal ? `killed by ${end.signal}` : `exit ${end.code}`})`);
    } finally {
      clearTimeout(timer);
    }
  }

  override async update(rt: Runtime, change: ResourceChange): Promise<Runtime> {
    return this.cgroups.update(rt, change);
  }

  /**
   * A process is the one recorded only if its pid is alive with the same start
   * time (pids are reused). It is no longer the agent's child, so its exit is
   * noticed by polling.
   */
  override async adopt(spec: WorkloadSpec<ProcessWorkload>, recorded: Runtime | undefined): Promise<Runtime> {
    const rt = recorded ?? this.findStarted(spec.objectId);
    if (!this.cgroups.fs.exists(rt.cgroup)) throw new NotFoundError(`cgroup of ${spec.objectId} is gone`);
    const same = isSameProcess(rt.pid, rt.startTime);
    const adopted = { ...rt, running: same, applied: this.cgroups.fs.readLimits(rt.cgroup) };
    this.logs.watch(this.logFile(spec.objectId));
    if (same) this.pollExit(spec.objectId, adopted);
    return adopted;
  }

  /**
   * A create the restart interrupted: its process is the one in the object's
   * cgroup that exec'd its command (not a launcher still waiting for "go",
   * which exits by itself once the agent is gone) and whose parent is outside
   * the group; the oldest, if its children left too.
   */
  private findStarted(objectId: string): Runtime {
    const rel = cgroupName(objectId);
    const ref = this.cgroups.fs.refFor(rel);
    const pids = this.cgroups.fs.pids(ref);
    const inGroup = new Set(pids);
    let main: { pid: number; startTime: number } | undefined;
    for (const pid of pids) {
      const cmdline = safeRead(`/proc/${pid}/cmdline`);
      const ppid = parentPid(pid);
      const startTime = processStartTime(pid);
      if (cmdline === '' || cmdline.includes(`\0${LAUNCH_MARK}\0`) || ppid === undefined || inGroup.has(ppid) || startTime === undefined) continue;
      if (!main || startTime < main.startTime) main = { pid, startTime };
    }
    if (!main) throw new NotFoundError(`process of ${objectId} was not started`);
    return { runtimeId: `${this.cgroups.fs.parent}/${rel}`, pid: main.pid, cgroup: ref, applied: this.cgroups.fs.readLimits(ref), running: true, startTime: main.startTime };
  }

  /** Everything in the object's cgroup is stopped, the cgroup removed, and the object's logs. */
  override async purge(spec: WorkloadSpec<ProcessWorkload>): Promise<void> {
    const ref = this.cgroups.fs.refFor(cgroupName(spec.objectId));
    if (this.cgroups.fs.exists(ref)) {
      await this.killGroup(ref);
      this.cgroups.fs.remove(ref);
    }
    this.logs.remove(this.logFile(spec.objectId));
  }

  /**
   * Logs of objects that are gone (a kill between a Delete's stop and its
   * removal of the log, or a record dropped while the agent was away): the
   * files <objectId>.log and .log.1 of objects not kept, older than madeBefore.
   */
  override async sweep(keep: ReadonlySet<string>, madeBefore: Date): Promise<number> {
    let names: string[];
    try {
      names = fs.readdirSync(this.opts.logDir);
    } catch {
      return 0; // no log made yet
    }
    let removed = 0;
    for (const name of names) {
      const m = /^(.+)\.log(\.1)?$/.exec(name);
      if (!m || keep.has(m[1]!)) continue;
      const file = path.join(this.opts.logDir, name);
      try {
        const st = fs.lstatSync(file);
        if (!st.isFile() || st.mtime >= madeBefore) continue;
        fs.rmSync(file);
        removed++;
      } catch {
        // gone meanwhile
      }
    }
    return removed;
  }

  private pollExit(objectId: string, rt: Runtime): void {
    const timer = setInterval(() => {
      if (isSameProcess(rt.pid, rt.startTime)) return;
      clearInterval(timer);
      for (const l of this.listeners) l({ objectId, runtimeId: rt.runtimeId, running: false, reason: 'exited (while not the agent\'s child: code unknown)', pid: rt.pid });
    }, 1_000);
    timer.unref();
  }

  /** The logs go with the object: kept, they would outlive every record of it. */
  override async remove(rt: Runtime): Promise<void> {
    await this.killGroup(rt.cgroup, rt);
    this.cgroups.fs.remove(rt.cgroup);
    const objectId = objectIdOf(rt.runtimeId);
    if (objectId !== undefined) this.logs.remove(this.logFile(objectId));
  }

  override async inspect(rt: Runtime): Promise<Runtime> {
    const exists = this.cgroups.fs.exists(rt.cgroup);
    return {
      ...rt,
      running: isSameProcess(rt.pid, rt.startTime),
      applied: exists ? this.cgroups.fs.readLimits(rt.cgroup) : rt.applied,
    };
  }

  override sampler(rt: Runtime): Sampler {
    return this.cgroups.sampler(rt);
  }

  override close(): Promise<void> {
    this.logs.close();
    return Promise.resolve();
  }

  /**
   * SIGTERM everything in the group, SIGKILL what is left after the grace
   * period. The main process is signalled by pid too (it may have left the
   * group), but only while its start time says it is still the same process:
   * a stranger that took over a stopped process's pid is left alone.
   */
  private async killGroup(ref: Runtime['cgroup'], main?: { pid: number; startTime?: number }): Promise<void> {
    const alive = (): number[] => {
      const pids = new Set(this.cgroups.fs.pids(ref));
      if (main && isSameProcess(main.pid, main.startTime)) pids.add(main.pid);
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

const CGROUP_PREFIX = 'proc-';

/** Each process object's cgroup, below the agent's root: its mark on the host. */
function cgroupName(objectId: string): string {
  return `${CGROUP_PREFIX}${objectId}`;
}

/** cgroupName's inverse on a runtime id (<parent>/proc-<objectId>); undefined for one it did not make. */
function objectIdOf(runtimeId: string): string | undefined {
  const name = path.posix.basename(runtimeId);
  return name.startsWith(CGROUP_PREFIX) ? name.slice(CGROUP_PREFIX.length) : undefined;
}

/** How long the launcher may take from "go" to the exec. */
const START_TIMEOUT_MS = 2_000;

/**
 * The byte came right before the exec: wait the moment until the pid is the
 * command (its argv no longer the launcher's), so that what create returns is
 * the command itself, or until it has already ended.
 */
async function waitExec(pid: number, exited: Promise<unknown>): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!gone && Date.now() < deadline) {
    const cmdline = safeRead(`/proc/${pid}/cmdline`);
    if (cmdline === '' || !cmdline.includes(`\0${LAUNCH_MARK}\0`)) return;
    await sleep(1);
  }
}

/** Resolves true once the launcher's byte arrives on the pipe, false at its end without it. */
function readyByte(pipe: Readable | null | undefined): Promise<boolean> {
  if (!pipe) return Promise.resolve(false);
  return new Promise((resolve) => {
    pipe.on('data', () => {
      resolve(true);
      pipe.destroy();
    });
    pipe.once('end', () => resolve(false));
    pipe.once('close', () => resolve(false));
    pipe.on('error', () => resolve(false));
  });
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

function realExecutable(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch (err) {
    throw new DriverError(DriverNames.Process, `executable not found: ${p}`, { cause: err });
  }
}
