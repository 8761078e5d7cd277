import * as fs from 'node:fs';
import * as os from 'node:os';
import { safeRead } from './cgroup-fs';
import type { Figures } from './types';

let ownNetNs: string | undefined;
function netNsOf(pid: number | 'self'): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/** Sums rx/tx bytes over every interface but lo in a /proc/.../net/dev text. */
export function parseNetDev(text: string): { rx: number; tx: number } | undefined {
  if (text === '') return undefined;
  let rx = 0;
  let tx = 0;
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    if (line.slice(0, colon).trim() === 'lo') continue;
    const f = line.slice(colon + 1).trim().split(/\s+/);
    rx += Number(f[0] ?? 0);
    tx += Number(f[8] ?? 0);
  }
  return { rx, tx };
}

/** /proc/<pid>/net/dev when the pid has a network namespace of its own, else undefined. */
export function netDevPath(pid: number): string | undefined {
  if (pid <= 0) return undefined;
  ownNetNs ??= netNsOf('self');
  const ns = netNsOf(pid);
  return ns === undefined || ns === ownNetNs ? undefined : `/proc/${pid}/net/dev`;
}

const CLK_TCK = 100; // USER_HZ on Linux

/** The host's own figures, for the heartbeat. */
export function hostFigures(): Figures {
  const cpuLine = safeRead('/proc/stat').split('\n')[0] ?? '';
  const j = cpuLine.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
  const busy = (j[0] ?? 0) + (j[1] ?? 0) + (j[2] ?? 0) + (j[5] ?? 0) + (j[6] ?? 0) + (j[7] ?? 0);
  const mem = safeRead('/proc/meminfo');
  const kb = (k: string): number | undefined => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB$`, 'm').exec(mem);
    return m?.[1] !== undefined ? Number(m[1]) * 1024 : undefined;
  };
  const total = kb('MemTotal') ?? os.totalmem();
  const avail = kb('MemAvailable');
  const loadavg = safeRead('/proc/loadavg').split(' ');
  const threads = loadavg[3]?.split('/')[1];
  const net = parseNetDev(safeRead('/proc/net/dev'));
  return {
    cpuUsageNs: cpuLine === '' ? undefined : (busy * 1e9) / CLK_TCK,
    memoryUsageBytes: avail !== undefined ? total - avail : undefined,
    memoryLimitBytes: total,
    pids: threads !== undefined ? Number(threads) : undefined,
    netRxBytes: net?.rx,
    netTxBytes: net?.tx,
  };
}

/** Process start time in clock ticks since boot (field 22 of /proc/<pid>/stat): with the pid, an identity that survives pid reuse. */
export function processStartTime(pid: number): number | undefined {
  const stat = safeRead(`/proc/${pid}/stat`);
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = stat.slice(close + 2).split(' ');
  const v = fields[19];
  return v !== undefined ? Number(v) : undefined;
}

/** The parent's pid (field 4 of /proc/<pid>/stat); undefined when the process is gone. */
export function parentPid(pid: number): number | undefined {
  const stat = safeRead(`/proc/${pid}/stat`);
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const v = stat.slice(close + 2).split(' ')[1];
  return v !== undefined ? Number(v) : undefined;
}

/** The process recorded as (pid, start time) is still that one: pids are reused, start times tell them apart. */
export function isSameProcess(pid: number, startTime: number | undefined): boolean {
  return startTime !== undefined && isAlive(pid) && processStartTime(pid) === startTime;
}

export function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  const stat = safeRead(`/proc/${pid}/stat`);
  if (stat === '') return false;
  const close = stat.lastIndexOf(')');
  return stat[close + 2] !== 'Z';
}
