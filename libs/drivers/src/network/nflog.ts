import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { openPrivateFile, privateDir } from '@agent/grpc-kit';
import { resolveExecutable, searchPathOf } from '../executables';

export interface NflogPacket {
  /** When the kernel logged the packet (ulogd's oob.time), else when the line arrived. */
  readonly at: Date;
  /** The nft `log prefix` text, trimmed. */
  readonly prefix: string;
  readonly srcIp: string;
  readonly dstIp: string;
  /** 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp' ..., or the IP protocol number as a string. */
  readonly protocol: string;
  readonly srcPort?: number;
  readonly dstPort?: number;
}

export interface FlowLogOptions {
  /** NFLOG group (nft `log group N`), 1-65535: one listener per group and network namespace. */
  readonly group: number;
  /** Private dir for ulogd.conf, the unix socket and ulogd's own log; created 0700 if missing. */
  readonly dir: string;
  readonly onPacket: (p: NflogPacket) => void;
  /** Told when ulogd dies and is restarted, or onPacket throws. */
  readonly onError?: (message: string) => void;
  /** Default: 'ulogd' from PATH. */
  readonly ulogdPath?: string;
}

const START_TIMEOUT_MS = 5_000;
const KILL_AFTER_MS = 2_000;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5_000;
const PLUGINS = ['inppkt_NFLOG', 'raw2packet_BASE', 'filter_IP2STR', 'output_JSON'];
const PROTOCOLS: Record<number, string> = { 1: 'icmp', 2: 'igmp', 6: 'tcp', 17: 'udp', 47: 'gre', 50: 'esp', 51: 'ah', 58: 'icmpv6', 132: 'sctp' };

/**
 * Packets logged by nft `log group N` rules, read through a ulogd child: ulogd owns the
 * NFLOG netlink group and writes one JSON object a line to a unix socket we listen on (its
 * JSON plugin connects as a client, so we listen first). ulogd runs in the foreground with its
 * log on stdout, so it writes nothing outside `dir`. If it dies it is restarted with backoff:
 * the kernel drops what is logged to a group nobody listens on.
 */
export class FlowLog {
  private child: ChildProcess | undefined;
  private readonly conns = new Set<net.Socket>();
  private connected: (() => void) | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private backoffMs = BACKOFF_MIN_MS;
  private closing: Promise<void> | undefined;
  private delivered = 0;
  private bad = 0;

  private constructor(private readonly opts: FlowLogOptions, private readonly server: net.Server, private readonly files: Files) {}

  static async start(opts: FlowLogOptions): Promise<FlowLog> {
    if (!Number.isInteger(opts.group) || opts.group < 1 || opts.group > 65535) throw new Error(`NFLOG group must be 1-65535, not ${opts.group}`);
    const pluginDir = findPluginDir();
    privateDir(opts.dir);
    const files = filesIn(path.resolve(opts.dir));
    await killStale(files);
    writePrivate(files.conf, ulogdConfig(pluginDir, opts.group, files.sock));
    fs.rmSync(files.sock, { force: true });
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(files.sock, resolve));
    fs.chmodSync(files.sock, 0o600);
    const flow = new FlowLog(opts, server, files);
    server.on('connection', (s) => flow.accept(s));
    try {
      await flow.launch();
    } catch (err) {
      await flow.close();
      throw err;
    }
    return flow;
  }

  /** Packets handed to onPacket so far. */
  get packets(): number {
    return this.delivered;
  }

  /** Lines that were not JSON or carried no IP addresses; skipped. */
  get malformed(): number {
    return this.bad;
  }

  /** Stops ulogd (SIGTERM, SIGKILL after 2 s) for good, then the socket server. The pid file stays: see killStale. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.restartTimer);
      if (this.child) await stop(this.child);
      for (const s of this.conns) s.destroy();
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
      fs.rmSync(this.files.sock, { force: true });
    })();
    return this.closing;
  }

  /** Spawns ulogd; settles when it has connected to our socket, or failed to within 5 s (then it is killed). */
  private launch(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ulogd = this.opts.ulogdPath ?? 'ulogd';
      if (resolveExecutable(ulogd, searchPathOf([])) === undefined) return reject(new Error(`ulogd (${ulogd}) did not start: spawn ${ulogd} ENOENT`));
      const out = openPrivateFile(this.files.log);
      // With setpriv, ulogd gets SIGTERM when the agent dies, even by SIGKILL (else the next start kills it: see killStale).
      const child = SETPRIV ? spawn(SETPRIV, ['--pdeathsig', 'TERM', '--', ulogd, '-c', this.files.conf], { stdio: ['ignore', out, out] }) : spawn(ulogd, ['-c', this.files.conf], { stdio: ['ignore', out, out] });
      fs.closeSync(out);
      this.child = child;
      const startedAt = Date.now();
      let settled = false;
      let up = false;
      const fail = (why: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.connected = undefined;
        void stop(child).then(() => reject(new Error(`ulogd (${this.opts.ulogdPath ?? 'ulogd'}) did not start: ${why}${logTail(this.files.log)}`)));
      };
      const timer = setTimeout(() => fail(`no connection to ${this.files.sock} within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
      this.connected = () => {
        settled = up = true;
        clearTimeout(timer);
        this.connected = undefined;
        if (child.pid !== undefined) writePrivate(this.files.pid, `${child.pid}\n`);
        resolve();
      };
      child.once('error', (err) => fail(err.message));
      child.once('exit', (code, signal) => {
        if (this.child === child) this.child = undefined;
        const how = signal ? `signal ${signal}` : `code ${code}`;
        if (!settled) fail(`exited with ${how}`);
        else if (up && !this.closing) this.restart(`ulogd exited with ${how}`, Date.now() - startedAt > 2 * BACKOFF_MAX_MS);
      });
    });
  }

  /** Backoff doubles from 250 ms to 5 s, and starts over once a ulogd has lived a while. */
  private restart(why: string, livedLong: boolean): void {
    if (livedLong) this.backoffMs = BACKOFF_MIN_MS;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.opts.onError?.(`restarting ulogd in ${delay} ms: ${why}`);
    this.restartTimer = setTimeout(() => {
      if (this.closing) return;
      this.launch().catch((err: Error) => this.closing || this.restart(err.message, false));
    }, delay);
  }

  private accept(s: net.Socket): void {
    this.conns.add(s);
    s.setEncoding('utf8');
    let partial = '';
    s.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) this.line(line);
    });
    s.on('error', () => s.destroy());
    s.on('close', () => this.conns.delete(s));
    this.connected?.();
  }

  private line(text: string): void {
    if (!text.trim()) return;
    const p = toPacket(text, new Date());
    if (!p) {
      this.bad++;
      return;
    }
    this.delivered++;
    try {
      this.opts.onPacket(p);
    } catch (err) {
      this.opts.onError?.(`onPacket threw: ${String(err)}`);
    }
  }
}

/** util-linux's setpriv (in every Debian): it sets the parent-death signal, then execs ulogd in its place. */
const SETPRIV = resolveExecutable('setpriv', '/usr/bin:/bin');

interface Files { readonly conf: string; readonly sock: string; readonly log: string; readonly pid: string }

function filesIn(dir: string): Files {
  // ulogd's config has no escapes, and a unix socket path has 108 bytes at most.
  if (/["\n\r]/.test(dir)) throw new Error(`ulogd dir must not contain quotes or newlines: ${dir}`);
  const sock = path.join(dir, 'ulogd.sock');
  if (Buffer.byteLength(sock) > 107) throw new Error(`ulogd socket path too long (max 107 bytes): ${sock}`);
  return { conf: path.join(dir, 'ulogd.conf'), sock, log: path.join(dir, 'ulogd.log'), pid: path.join(dir, 'ulogd.pid') };
}

/**
 * The kernel batches a group's packets and flushes every 50 ms (default: 1 s, too late for
 * a connection-refused SYN). The netlink receive buffer (default ~200 KiB: a 20,000-packet burst
 * lost 90%) is 4 MiB (the kernel doubles it to 8), which ulogd grows on overrun: bursts wait there
 * while ulogd blocks writing to us. ulogd applies the size only if below the max.
 */
function ulogdConfig(pluginDir: string, group: number, sock: string): string {
  return [
    '[global]',
    'logfile="stdout"',
    'loglevel=5',
    ...PLUGINS.map((p) => `plugin="${pluginDir}/ulogd_${p}.so"`),
    'stack=log1:NFLOG,base1:BASE,ip2str1:IP2STR,json1:JSON',
    '',
    '[log1]',
    `group=${group}`,
    'netlink_socket_buffer_size=4194304',
    'netlink_socket_buffer_maxsize=33554432',
    'netlink_qtimeout=5',
    '',
    '[json1]',
    'mode="unix"',
    `file="${sock}"`,
    '',
  ].join('\n');
}

/** Where Debian (multiarch), Fedora and source builds put the plugins; the JSON one is a separate package on Debian. */
function findPluginDir(): string {
  const multiarch = fs.existsSync('/usr/lib') ? fs.readdirSync('/usr/lib').map((d) => `/usr/lib/${d}/ulogd`) : [];
  const dirs = [...multiarch, '/usr/lib64/ulogd', '/usr/lib/ulogd', '/usr/local/lib/ulogd'];
  const found = dirs.find((d) => PLUGINS.every((p) => fs.existsSync(`${d}/ulogd_${p}.so`)));
  if (!found) throw new Error(`ulogd plugins ${PLUGINS.join(', ')} not found in /usr/lib/*/ulogd etc. (Debian: apt install ulogd2 ulogd2-json)`);
  return found;
}

/**
 * A ulogd left over by a crashed agent still holds the group, and ours would fail to bind it:
 * kill the one whose pid we recorded if it still runs our conf, and wait up to 1 s for it to go.
 */
async function killStale(files: Files): Promise<void> {
  const ours = (pid: number): boolean => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(files.conf);
    } catch {
      return false; // gone (a zombie's cmdline is empty: it has let go of its sockets too)
    }
  };
  const pid = Number.parseInt(fs.existsSync(files.pid) ? fs.readFileSync(files.pid, 'utf8') : '', 10);
  if (!(pid > 0) || !ours(pid)) return;
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 50 && ours(pid); i++) await new Promise((r) => setTimeout(r, 20));
}

function writePrivate(file: string, content: string): void {
  fs.writeFileSync(file, content, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

function logTail(file: string): string {
  try {
    const tail = fs.readFileSync(file, 'utf8').trim().split('\n').slice(-5).join('\n');
    return tail ? `; ${path.basename(file)} ends with:\n${tail}` : '';
  } catch {
    return '';
  }
}

/** SIGTERM, SIGKILL after 2 s; resolves when the process has exited (at once if it never ran). */
function stop(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * One line of ulogd's JSON; undefined if it is not JSON or has no addresses. ulogd 2.0.8 names
 * a field by its key's CIM name if it has one (src_ip, dest_ip, src_port, dest_port), else by the
 * key (oob.prefix, ip.protocol). Its "timestamp" is local time with no zone: oob.time.* is used.
 */
function toPacket(line: string, received: Date): NflogPacket | undefined {
  let j: Record<string, unknown>;
  try {
    j = Object(JSON.parse(line)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const srcIp = str(j['src_ip']) ?? str(j['ip.saddr.str']);
  const dstIp = str(j['dest_ip']) ?? str(j['ip.daddr.str']);
  if (!srcIp || !dstIp) return undefined;
  const proto = num(j['ip.protocol']) ?? num(j['ip6.nexthdr']);
  const sec = num(j['oob.time.sec']);
  const stamp = Date.parse(str(j['timestamp']) ?? '');
  const at = sec !== undefined ? new Date(sec * 1000 + Math.floor((num(j['oob.time.usec']) ?? 0) / 1000)) : Number.isFinite(stamp) ? new Date(stamp) : received;
  const srcPort = num(j['src_port']) ?? num(j['tcp.sport']) ?? num(j['udp.sport']) ?? num(j['sctp.sport']);
  const dstPort = num(j['dest_port']) ?? num(j['tcp.dport']) ?? num(j['udp.dport']) ?? num(j['sctp.dport']);
  return {
    at,
    prefix: (str(j['oob.prefix']) ?? '').trim(),
    srcIp,
    dstIp,
    protocol: proto === undefined ? 'unknown' : (PROTOCOLS[proto] ?? String(proto)),
    ...(srcPort !== undefined ? { srcPort } : {}),
    ...(dstPort !== undefined ? { dstPort } : {}),
  };
}
