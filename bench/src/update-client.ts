// The Update client of the control case, in a process of its own: it does
// nothing but time memory updates, in alternating rounds, against each target
// (the agent, in one layout, and the floor). The bench's own process holds
// Docker clients, 200 objects and every result, and its garbage collector's
// pauses (full GCs of 5-16 ms) fell on whichever target's round was running;
// a caller of the agent does not carry that. The client also collects its
// own garbage between rounds, untimed, with a young generation large enough
// for a round (--max-semi-space-size): a collection never falls inside a
// timed call, since the longer a target's round is, the more of the client's
// pauses it would otherwise catch.
//
// Before the next target's round, the Docker record of the one before has
// caught up: the agent sends it to dockerd once the container has been still
// for 25 ms, and dockerd then spends 8-14 ms (its update's p50 and p99 here)
// and runc some more of the machine's two cores. That work fell on the first
// 30 updates of the next target's round, which had two to three times the
// slow updates of the rest of it. The first update of each round, after that
// pause and the client's collection, is not timed (it is reported apart): it
// took 3-6 ms for the agent and 2-5 ms for the floor, against 1.2 and 0.5 ms
// for the rest, so with ten rounds of a hundred the ten first updates alone
// set the p99 of both, a figure of the pauses between rounds.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import { apiClient, waitFor, type Api } from '@agent/testkit';
import { v1 } from '@agent/proto';

const MiB = 1024 * 1024;
/** After Docker's record shows the value: containerd's and runc's part of dockerd's update (its whole update takes 8-14 ms here). */
const RUNC_SETTLE_MS = 50;

export interface UpdateTarget {
  readonly name: string;
  readonly address: string;
  readonly token: string;
  readonly objectId: string;
  /** The cgroup file the limit lands in: read after each answer, which must already show it. */
  readonly file: string;
  /** The container whose Docker record follows the target's updates (none for the floor). */
  readonly container?: string;
}

export interface UpdatePlan {
  readonly targets: readonly UpdateTarget[];
  /** Updates per target before timing (the JIT, the paths through the services). */
  readonly warm: number;
  readonly updates: number;
  readonly round: number;
}

export interface UpdateTimes {
  /** Each target's latencies, ms from the client's send until its answer. */
  readonly times: Record<string, number[]>;
  /** The same of each round's first update (not in times). */
  readonly firsts: Record<string, number[]>;
  /** The client's own garbage collections while it timed (count, total ms). */
  readonly clientGc: { readonly count: number; readonly ms: number };
  /** The longest wait, between rounds, for a Docker record to catch up (ms). */
  readonly recordWaitMs: number;
}

/** Runs the plan in a child process (node update-client.js) and returns its times. */
export async function timeUpdates(plan: UpdatePlan): Promise<UpdateTimes> {
  const child = spawn(process.execPath, ['--expose-gc', '--max-semi-space-size=64', __filename], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin!.end(JSON.stringify(plan));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => void (out += d.toString()));
  // 'close', not 'exit': the child's stdout is read to its end first.
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (code !== 0) throw new Error(`update client exited with ${code}`);
  return JSON.parse(out) as UpdateTimes;
}

/**
 * n memory updates one after the other, alternating between two limits, each
 * timed from the client's send until its answer (wait: true; the agent answers
 * once the cgroup holds the limit, and the file is read to check it does): an
 * upper bound of the time until the kernel holds it, measured without a poller
 * taking a core from the agent.
 */
async function rounds(client: Api, t: UpdateTarget, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = limitAt(i);
    const t0 = performance.now();
    const ack = await client.call('update', v1.UpdateRequest.fromPartial({ objectId: t.objectId, resources: { memoryBytes: bytes }, wait: true }));
    out.push(performance.now() - t0);
    if (ack.status !== v1.EventStatus.EVENT_STATUS_SUCCEEDED) throw new Error(`${t.name}: update failed: ${ack.error}`);
    const held = fs.readFileSync(t.file, 'utf8').trim();
    if (held !== String(bytes)) throw new Error(`${t.name} answered before the cgroup held it: ${t.file} reads ${held}, not ${bytes}`);
  }
  return out;
}

function limitAt(i: number): number {
  return (i % 2 === 0 ? 80 : 72) * MiB;
}

/**
 * Until Docker's record of the target's container holds the limit its cgroup
 * holds (the last of the round), and RUNC_SETTLE_MS more (dockerd writes its
 * record before it has containerd and runc change the running container); the
 * ms it took.
 */
async function recordCaughtUp(docker: Docker, t: UpdateTarget): Promise<number> {
  if (t.container === undefined) return 0;
  const t0 = performance.now();
  const want = Number(fs.readFileSync(t.file, 'utf8'));
  const container = docker.getContainer(t.container);
  await waitFor(`${t.name}: Docker's record of ${t.container} to hold ${want}`, async () => (await container.inspect()).HostConfig.Memory === want || undefined, 10_000, 10);
  await sleep(RUNC_SETTLE_MS);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const plan = JSON.parse(fs.readFileSync(0, 'utf8')) as UpdatePlan;
  const clients = plan.targets.map((t) => apiClient(t.address, t.token));
  const docker = new Docker({ socketPath: '/var/run/docker.sock' });
  let recordWaitMs = 0;
  try {
    for (const [i, t] of plan.targets.entries()) {
      await rounds(clients[i]!, t, plan.warm);
      await recordCaughtUp(docker, t);
    }
    const gc = { count: 0, ms: 0 };
    // The client's own collections between rounds (start, end): not timed, so not counted.
    const untimed: Array<[number, number]> = [];
    const collect = (): void => {
      const t0 = performance.now();
      (globalThis as { gc?: () => void }).gc?.();
      untimed.push([t0, performance.now()]);
    };
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (!untimed.some(([a, b]) => e.startTime >= a && e.startTime <= b)) (gc.count++, (gc.ms += e.duration));
    });
    obs.observe({ entryTypes: ['gc'] });
    const times: Record<string, number[]> = Object.fromEntries(plan.targets.map((t) => [t.name, []]));
    const firsts: Record<string, number[]> = Object.fromEntries(plan.targets.map((t) => [t.name, []]));
    // Rounds taken in turn, so that what else the machine does meanwhile falls on all alike.
    for (let done = 0; done < plan.updates; done += plan.round) {
      for (const [i, t] of plan.targets.entries()) {
        collect();
        const [first, ...rest] = await rounds(clients[i]!, t, plan.round + 1);
        firsts[t.name]!.push(first!);
        times[t.name]!.push(...rest);
        recordWaitMs = Math.max(recordWaitMs, await recordCaughtUp(docker, t));
      }
    }
    await new Promise((r) => setImmediate(r)); // the last GC entries are delivered on a later turn
    obs.disconnect();
    process.stdout.write(JSON.stringify({ times, firsts, clientGc: gc, recordWaitMs } satisfies UpdateTimes));
  } finally {
    for (const c of clients) c.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`update client: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
