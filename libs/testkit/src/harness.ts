// Real components for the end-to-end tests: the daemon and the sink run as
// child processes exactly as a user starts them; calls go through buf curl
// (the grpcurl stand-in, reflection only) or a plain grpc-js client.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { promisify } from 'node:util';
import { readToken } from '@agent/grpc-kit';
import { scratchDir } from './scratch';

export const ROOT = path.resolve(__dirname, '../../..');
export const BUSYBOX = 'local/busybox:latest';
const BUF = path.join(ROOT, 'node_modules/.bin/buf');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export interface LogLine {
  readonly msg: string;
  readonly module: string;
  readonly [k: string]: unknown;
}

export interface Agent {
  readonly address: string;
  /** The unix socket (admin without a token). */
  readonly socket: string;
  /** The admin and reader tokens, read from the files the agent made, as a user would. */
  readonly token: string;
  readonly readerToken: string;
  /** What the agent's services present to each other. */
  readonly internalToken: string;
  readonly dataDir: string;
  readonly cgroupParent: string;
  readonly hostId: string;
  readonly logs: LogLine[];
  readonly child: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts apps/daemon (what npm start runs) and waits for "agent ready".
 * wrap: a command that execs the rest (unshare ... --), to run the agent in
 * a namespace of its own; signals reach the agent itself.
 */
export async function startAgent(env: Record<string, string> = {}, again?: Pick<Agent, 'address' | 'dataDir' | 'cgroupParent' | 'hostId'>, wrap: readonly string[] = []): Promise<Agent> {
  // `again`: the same agent once more (same address, data, cgroup root and host id), as after a restart.
  const port = again ? Number(again.address.split(':')[1]) : await freePort();
  const dataDir = again?.dataDir ?? scratchDir('agent-e2e-');
  const cgroupParent = again?.cgroupParent ?? `agent-e2e-${randomBytes(4).toString('hex')}`;
  const hostId = again?.hostId ?? `e2e-${randomBytes(3).toString('hex')}`;
  const listen = env.AGENT_LISTEN ?? `127.0.0.1:${port}`;
  const [command = process.execPath, ...args] = [...wrap, process.execPath, path.join(ROOT, 'apps/daemon/dist/main.js')];
  const child = spawn(command, args, {
    env: {
      ...process.env,
      AGENT_LISTEN: listen,
      AGENT_DATA_DIR: dataDir,
      AGENT_CGROUP_PARENT: cgroupParent,
      AGENT_HOST_ID: hostId,
      AGENT_LOG_LEVEL: 'info',
      AGENT_STOP_GRACE_MS: '1000',
      // Tests see only what they make; the discovery tests turn this on with a label filter.
      AGENT_DISCOVER: 'off',
      // Tests run side by side: the metrics tests give each agent its own address.
      AGENT_METRICS_LISTEN: 'off',
      ...env,
    },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  const logs: LogLine[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stderr! });
    rl.on('line', (line) => {
      let parsed: LogLine | undefined;
      try {
        parsed = JSON.parse(line) as LogLine;
      } catch {
        process.stderr.write(`[agent] ${line}\n`);
        return;
      }
      logs.push(parsed);
      if (parsed.msg === 'agent ready') resolve();
      if (process.env.AGENT_E2E_VERBOSE) process.stderr.write(`[agent] ${line}\n`);
    });
    child.once('exit', (code) => reject(new Error(`agent exited early with ${code}: ${JSON.stringify(logs.slice(-5))}`)));
  });
  const timeout = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await ready.finally(() => clearTimeout(timeout));
  const tokenDir = env.AGENT_TOKEN_DIR ?? path.join(dataDir, 'auth');
  return {
    address: listen.replace(/^0\.0\.0\.0:/, '127.0.0.1:'),
    socket: env.AGENT_SOCKET ?? path.join(dataDir, 'agent.sock'),
    token: readTokenFile(path.join(tokenDir, 'admin.token')),
    readerToken: readTokenFile(path.join(tokenDir, 'reader.token')),
    internalToken: readTokenFile(env.AGENT_INTERNAL_TOKEN_FILE ?? path.join(tokenDir, 'internal.token')),
    dataDir,
    cgroupParent,
    hostId,
    logs,
    child,
    stop: (signal: NodeJS.Signals = 'SIGTERM') =>
      new Promise<number | null>((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill(signal);
      }).then((code) => {
        removeCgroupParent(cgroupParent);
        return code;
      }),
  };
}

/**
 * Removes a test's cgroup root where it is empty (what a test left running
 * keeps it), after the groups below it named in children: ones no agent will
 * remove (an object whose record the test destroyed), else they keep the
 * root in every hierarchy for good.
 */
export function removeCgroupParent(parent: string, children: readonly string[] = []): void {
  for (const ctrl of ['memory', 'cpu', 'cpuacct', 'pids', 'blkio', 'cpuset', '']) {
    for (const rel of [...children, '']) {
      try {
        fs.rmdirSync(path.join('/sys/fs/cgroup', ctrl, parent, rel));
      } catch {
        /* absent, or still in use */
      }
    }
  }
}

export interface Sink {
  readonly address: string;
  readonly lines: Array<{ type: string; hostId?: string; bootId?: string; seq?: number; report?: Record<string, unknown>; flow?: Record<string, unknown>; change?: Record<string, unknown>; host?: Record<string, unknown> }>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts tools/sink, the upstream ReportSink a user would run. */
export async function startSink(opts: { tokenFile?: string; port?: number; stateFile?: string } = {}): Promise<Sink> {
  const port = opts.port ?? (await freePort());
  const auth = opts.tokenFile !== undefined ? ['--token-file', opts.tokenFile] : [];
  const state = opts.stateFile !== undefined ? ['--state', opts.stateFile] : [];
  const child = spawn(process.execPath, [path.join(ROOT, 'tools/sink/dist/main.js'), '--listen', `127.0.0.1:${port}`, ...auth, ...state], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Sink['lines'] = [];
  await new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (l) => {
      const o = JSON.parse(l) as Sink['lines'][number];
      lines.push(o);
      if (o.type === 'listening') resolve();
    });
    child.once('exit', (code) => reject(new Error(`sink exited with ${code}`)));
  });
  return {
    address: `127.0.0.1:${port}`,
    lines,
    stop: (signal: NodeJS.Signals = 'SIGTERM') =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill(signal);
      }),
  };
}

/** A token file as a user reads it: `$(cat file)`; empty when there is none. */
export function readTokenFile(file: string): string {
  return readToken(file) ?? '';
}

export interface CurlResult {
  readonly ok: boolean;
  readonly body: any;
  /** For failures: buf curl's {"code": "...", "message": "..."}. */
  readonly error?: { code: string; message: string };
}

/** buf curl's target arguments for host:port or unix:/path, with the URL path appended. */
export function bufTarget(address: string, urlPath = ''): string[] {
  if (address.startsWith('unix:')) return ['--unix-socket', address.slice('unix:'.length), `http://localhost${urlPath}`];
  return [`http://${address}${urlPath}`];
}

export interface CurlOpts {
  /** Sent as -H "authorization: Bearer <token>", as the README shows. */
  readonly token?: string;
  /** Run buf curl as this user (an unprivileged caller). */
  readonly uid?: number;
  readonly gid?: number;
}

/**
 * buf's native binary, copied where any user may run it: the checkout may sit
 * under a directory only root can enter, and a test user must still call in.
 */
function bufForAnyone(): string {
  const scope = path.join(ROOT, 'node_modules/@bufbuild');
  const pkg = fs.readdirSync(scope).find((d) => d.startsWith(`buf-${process.platform}-`) && fs.existsSync(path.join(scope, d, 'bin/buf')));
  if (!pkg) throw new Error(`no native buf under ${scope}`);
  const dir = path.join(os.tmpdir(), 'agent-e2e-buf');
  const copy = path.join(dir, 'buf');
  if (!fs.existsSync(copy)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    fs.copyFileSync(path.join(scope, pkg, 'bin/buf'), `${copy}.${process.pid}`);
    fs.chmodSync(`${copy}.${process.pid}`, 0o755);
    fs.renameSync(`${copy}.${process.pid}`, copy);
  }
  fs.chmodSync(dir, 0o755);
  return copy;
}

/** A scratch home (buf's cache) for a test user. */
function homeOf(uid: number, gid: number): string {
  const dir = path.join(os.tmpdir(), `agent-e2e-home-${uid}-${gid}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chownSync(dir, uid, gid);
  return dir;
}

/** buf curl over reflection, like grpcurl: no proto files. */
export async function bufCurl(address: string, method: string, body: unknown = {}, opts: CurlOpts = {}): Promise<CurlResult> {
  const auth = opts.token ? ['-H', `authorization: Bearer ${opts.token}`] : [];
  try {
    const { stdout } = await promisify(execFile)(
      opts.uid !== undefined ? bufForAnyone() : BUF,
      ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--timeout', '60s', ...auth, '-d', JSON.stringify(body), ...bufTarget(address, `/${method}`)],
      { maxBuffer: 16 * 1024 * 1024, uid: opts.uid, gid: opts.gid, env: opts.uid !== undefined ? { PATH: process.env.PATH, HOME: homeOf(opts.uid, opts.gid ?? opts.uid) } : process.env },
    );
    return { ok: true, body: stdout.trim() === '' ? {} : JSON.parse(stdout) };
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string };
    let error: CurlResult['error'];
    try {
      error = JSON.parse(e.stderr ?? '') as CurlResult['error'];
    } catch {
      throw new Error(`buf curl failed without a status: ${e.stderr ?? String(err)}`);
    }
    return { ok: false, body: undefined, error };
  }
}

/** A call on the public API with the agent's admin token (or the one given). */
export const api = (agent: { address: string; token?: string }, method: string, body: unknown = {}, token = agent.token): Promise<CurlResult> =>
  bufCurl(agent.address, `agent.v1.AgentService/${method}`, body, { token });

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function sh(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(cmd, args);
  return stdout.trim();
}


/** The memory limit file of a pid's cgroup, found independently of the agent's code. */
export function memoryLimitFile(pid: number): string {
  const lines = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  const v1 = lines.find((l) => l.split(':')[1]?.split(',').includes('memory'));
  if (v1) return path.join('/sys/fs/cgroup/memory', v1.split(':')[2] ?? '/', 'memory.limit_in_bytes');
  const v2 = lines.find((l) => l.startsWith('0::'));
  return path.join('/sys/fs/cgroup', v2?.slice(3) ?? '/', 'memory.max');
}

/** The CPU quota (µs per period) of a pid's cgroup, -1 for none, found independently of the agent's code. */
export function cpuQuotaOf(pid: number): number {
  const lines = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  const v1 = lines.find((l) => l.split(':')[1]?.split(',').includes('cpu'));
  if (v1) return Number(fs.readFileSync(path.join('/sys/fs/cgroup/cpu', v1.split(':')[2] ?? '/', 'cpu.cfs_quota_us'), 'utf8').trim());
  const v2 = lines.find((l) => l.startsWith('0::'));
  const [quota = 'max'] = fs.readFileSync(path.join('/sys/fs/cgroup', v2?.slice(3) ?? '/', 'cpu.max'), 'utf8').trim().split(' ');
  return quota === 'max' ? -1 : Number(quota);
}

/** CPU seconds (user+system) a pid has used, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly name: string;
  readonly service: string;
  readonly attributes: Record<string, unknown>;
  readonly status: number;
  readonly links: Array<{ traceId: string; spanId: string }>;
}

export interface Receiver {
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  stop(): Promise<void>;
}

/** tools/otlp-receiver: an OTLP/HTTP JSON receiver standing in for Jaeger, which cannot run here. */
export async function startOtlpReceiver(): Promise<Receiver> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(ROOT, 'tools/otlp-receiver/dist/main.js'), '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const spans: ReceivedSpan[] = [];
  await new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (l) => {
      const o = JSON.parse(l) as ReceivedSpan & { listening?: string };
      if (o.listening) resolve();
      else spans.push(o);
    });
    child.once('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    stop: (signal: NodeJS.Signals = 'SIGTERM') =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill(signal);
      }),
  };
}

/** The five services as five processes, wired by address as in compose; resolves when all are healthy. */
export async function startSeparateAgent(
  extraEnv: Record<string, string> = {},
): Promise<{
  address: string;
  /** The admin token, and the token the services present to each other. */
  token: string;
  internalToken: string;
  addresses: Record<'apiserver' | 'agentcore' | 'manager' | 'collector' | 'reporter', string>;
  cgroupParent: string;
  dataDir: string;
  pids: number[];
  restart(app: string, signal?: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}> {
  const ports = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const [a, c, m, co, r] = ports.map((p) => `127.0.0.1:${p}`) as [string, string, string, string, string];
  const dataDir = scratchDir('agent-sep-');
  const cgroupParent = `agent-sep-${randomBytes(4).toString('hex')}`;
  const env = {
    ...process.env,
    AGENT_DATA_DIR: dataDir,
    AGENT_CGROUP_PARENT: cgroupParent,
    AGENT_LISTEN: a,
    AGENT_AGENTCORE_LISTEN: c,
    AGENT_MANAGER_LISTEN: m,
    AGENT_COLLECTOR_LISTEN: co,
    AGENT_REPORTER_LISTEN: r,
    AGENT_AGENTCORE_ADDR: c,
    AGENT_MANAGER_ADDR: m,
    AGENT_COLLECTOR_ADDR: co,
    AGENT_REPORTER_ADDR: r,
    AGENT_DISCOVER: 'off',
    AGENT_METRICS_LISTEN: 'off',
    ...extraEnv,
  };
  // Started in reverse dependency order on purpose: each waits for its peers.
  const apps = ['apiserver', 'agentcore', 'collector', 'reporter', 'manager'];
  const launch = (app: string): ChildProcess =>
    spawn(process.execPath, [path.join(ROOT, `apps/${app}/dist/main.js`)], { env, stdio: ['ignore', 'ignore', process.env.AGENT_E2E_VERBOSE ? 'inherit' : 'ignore'] });
  const children = apps.map(launch);
  const services: Array<[string, string]> = [[a, 'agent.v1.AgentService'], [c, 'agent.internal.v1.AgentCore'], [m, 'agent.internal.v1.Manager'], [co, 'agent.internal.v1.Collector'], [r, 'agent.internal.v1.Reporter']];
  for (const [addr, svc] of services) {
    await waitFor(`${svc} healthy`, async () => {
      const h = await bufCurl(addr, 'grpc.health.v1.Health/Check', { service: svc }).catch(() => undefined);
      return h?.body?.status === 'SERVING' ? true : undefined;
    }, 20_000, 200);
  }
  return {
    address: a,
    token: readTokenFile(path.join(dataDir, 'auth', 'admin.token')),
    internalToken: readTokenFile(path.join(dataDir, 'auth', 'internal.token')),
    addresses: { apiserver: a, agentcore: c, manager: m, collector: co, reporter: r },
    cgroupParent,
    dataDir,
    pids: children.map((ch) => ch.pid ?? 0),
    /** Kills one service and starts it again, as a crash and a supervisor would. */
    restart: async (app: string, signal: NodeJS.Signals = 'SIGKILL') => {
      const i = apps.indexOf(app);
      const old = children[i]!;
      await new Promise<void>((resolve) => (old.exitCode !== null ? resolve() : (old.once('exit', () => resolve()), old.kill(signal))));
      children[i] = launch(app);
    },
    stop: async () => {
      await Promise.all(children.map((ch) => new Promise<void>((resolve) => (ch.exitCode !== null ? resolve() : (ch.once('exit', () => resolve()), ch.kill('SIGTERM'))))));
      removeCgroupParent(cgroupParent);
    },
  };
}

/** A real nats-server with JetStream on a free port, storing in a temporary directory. */
export async function startNats(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-nats-'));
  const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await waitFor('nats-server', () =>
    new Promise<true | undefined>((resolve) => {
      const sock = net.connect(port, '127.0.0.1', () => (sock.end(), resolve(true)));
      sock.on('error', () => resolve(undefined));
    }), 10_000, 100).catch((e: Error) => {
    throw new Error(`${e.message}: ${err}`);
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => {
          fs.rmSync(dir, { recursive: true, force: true });
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

/**
 * A unix socket that forwards to the real Docker socket and can be cut and
 * restored: the Docker engine going away and coming back, as the agent sees it.
 */
export async function startDockerProxy(target = '/var/run/docker.sock'): Promise<{ path: string; down(): Promise<void>; up(): Promise<void>; stop(): Promise<void> }> {
  const sockPath = path.join(scratchDir('dproxy-'), 'docker.sock');
  const conns = new Set<net.Socket>();
  let server: net.Server | undefined;
  const up = (): Promise<void> =>
    new Promise((resolve) => {
      fs.rmSync(sockPath, { force: true });
      server = net.createServer((client) => {
        const upstream = net.connect(target);
        conns.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        const done = (): void => {
          client.destroy();
          upstream.destroy();
          conns.delete(client);
          conns.delete(upstream);
        };
        client.on('error', done).on('close', done);
        upstream.on('error', done).on('close', done);
      });
      server.listen(sockPath, () => resolve());
    });
  const down = (): Promise<void> =>
    new Promise((resolve) => {
      for (const c of conns) c.destroy();
      conns.clear();
      if (!server) return resolve();
      server.close(() => resolve());
      server = undefined;
    });
  await up();
  return { path: sockPath, down, up, stop: down };
}
