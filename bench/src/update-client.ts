// The Update client of the control case, in a process of its own: it does
// nothing but time memory updates, in alternating rounds, against each target
// (the agent in one process, the floor, the agent in five). The bench's own
// process holds Docker clients, 200 objects and every result, and its
// garbage collector's pauses (full GCs of 5-16 ms) fell on whichever target's
// round was running; a caller of the agent does not carry that. The client
// also collects its own garbage between rounds, untimed, with a young
// generation large enough for a round (--max-semi-space-size): a collection
// never falls inside a timed call, since the longer a target's round is, the
// more of the client's pauses it would otherwise catch.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { apiClient } from '@agent/testkit';
import { v1 } from '@agent/proto';

const MiB = 1024 * 1024;

export interface UpdateTarget {
  readonly name: string;
  readonly address: string;
  readonly token: string;
  readonly objectId: string;
  /** The cgroup file the limit lands in: read after each answer, which must already show it. */
  readonly file: string;
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
  /** The client's own garbage collections while it timed (count, total ms). */
  readonly clientGc: { readonly count: number; readonly ms: number };
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
async function rounds(client: ReturnType<typeof apiClient>, t: UpdateTarget, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = (i % 2 === 0 ? 80 : 72) * MiB;
    const t0 = performance.now();
    const ack = await client.call('update', v1.UpdateRequest.fromPartial({ objectId: t.objectId, resources: { memoryBytes: bytes }, wait: true }));
    out.push(performance.now() - t0);
    if (ack.status !== v1.EventStatus.EVENT_STATUS_SUCCEEDED) throw new Error(`${t.name}: update failed: ${ack.error}`);
    const held = fs.readFileSync(t.file, 'utf8').trim();
    if (held !== String(bytes)) throw new Error(`${t.name} answered before the cgroup held it: ${t.file} reads ${held}, not ${bytes}`);
  }
  return out;
}

async function main(): Promise<void> {
  const plan = JSON.parse(fs.readFileSync(0, 'utf8')) as UpdatePlan;
  const clients = plan.targets.map((t) => apiClient(t.address, t.token));
  try {
    for (const [i, t] of plan.targets.entries()) await rounds(clients[i]!, t, plan.warm);
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
    // Rounds taken in turn, so that what else the machine does meanwhile falls on all alike.
    for (let done = 0; done < plan.updates; done += plan.round) {
      for (const [i, t] of plan.targets.entries()) {
        collect();
        times[t.name]!.push(...(await rounds(clients[i]!, t, plan.round)));
      }
    }
    await new Promise((r) => setImmediate(r)); // the last GC entries are delivered on a later turn
    obs.disconnect();
    process.stdout.write(JSON.stringify({ times, clientGc: gc } satisfies UpdateTimes));
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
