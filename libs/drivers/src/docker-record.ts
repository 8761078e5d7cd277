// Docker's own record of a container's limits (its HostConfig), brought up to
// what the driver wrote to the container's cgroup, off the caller's path. The
// cgroup write is the change; the record is what Docker re-applies when it
// starts the container again, and what `docker inspect` shows.
import { atMost } from '@agent/grpc-kit';
import type { CgroupFs } from './cgroup-fs';
import type { CgroupRef, ResourceChange, Resources } from './types';

/** Sends a HostConfig change of container id to Docker (docker update). */
export type RecordWrite = (id: string, body: Readonly<Record<string, unknown>>) => Promise<void>;

/** Docker refused a change (err, its answer): the cgroup went back; applied is what it holds now. */
export type RecordRefused = (id: string, err: unknown, applied: Resources) => void;

interface Batch {
  /** HostConfig fields still to send; later changes override earlier ones. */
  body: Record<string, unknown>;
  /** The limits the cgroup was given for them. */
  change: ResourceChange;
  /** The cgroup's values before the earliest of them. */
  revert: ResourceChange;
  cgroup: CgroupRef;
}

/**
 * A container's record is sent once its limits have been still this long: a
 * burst of changes is one call, and no change lands while Docker is writing
 * an older one (Docker's update writes the cgroup too).
 */
const QUIET_MS = 25;

/** Docker's answer that says it will never take the change (as opposed to not answering). */
function refusal(err: unknown): boolean {
  const status = (err as { statusCode?: number }).statusCode;
  return status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429;
}

function gone(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

/**
 * One writer per container, sending once the container's limits have been
 * still for QUIET_MS: a burst of updates is one call, and a change that
 * arrives while Docker is being told of an earlier one joins the next call
 * (and goes back into the cgroup as soon as Docker's write of the older one
 * is done). A call Docker does not answer (engine restarting, socket gone)
 * is retried with backoff until it answers; one it refuses takes the cgroup
 * back to what it held before, and the owner hears why.
 */
export class DockerRecord {
  private readonly queued = new Map<string, Batch>();
  private readonly running = new Map<string, Promise<void>>();
  /** The call with Docker for a container, while there is one. */
  private readonly sending = new Map<string, Promise<void>>();
  /** When each container's cgroup last changed. */
  private readonly changedAt = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly fs: Pick<CgroupFs, 'applyLimits' | 'readLimits'>,
    private readonly write: RecordWrite,
    private readonly onRefused: RecordRefused,
    private readonly onRetry: (id: string, err: unknown, delayMs: number) => void = () => undefined,
  ) {}

  /** The cgroup of container id now holds change (it held revert before); body is the same change in Docker's terms. */
  follow(id: string, cgroup: CgroupRef, change: ResourceChange, revert: ResourceChange, body: Readonly<Record<string, unknown>>): void {
    if (Object.keys(body).length === 0) return;
    const q = this.queued.get(id);
    if (q) {
      Object.assign(q.body, body);
      q.change = { ...q.change, ...change };
      q.revert = { ...revert, ...q.revert };
      q.cgroup = cgroup;
    } else {
      this.queued.set(id, { body: { ...body }, change, revert, cgroup });
    }
    this.changedAt.set(id, Date.now());
    if (!this.running.has(id)) this.running.set(id, this.drain(id));
  }

  /**
   * Resolves once no call for id is with Docker (at most timeoutMs): the
   * driver writes a container's cgroup only then, because Docker's update
   * writes the running container's cgroup too, and one still under way would
   * put the older value back after the newer one. A Docker that does not
   * answer holds a change back no longer than timeoutMs.
   */
  async idle(id: string, timeoutMs = 2_000): Promise<void> {
    const call = this.sending.get(id);
    if (call) await atMost(call, timeoutMs);
  }

  /** Whether Docker's record of id is behind its cgroup (a change queued or being sent). */
  behind(id: string): boolean {
    return this.running.has(id);
  }

  /** Resolves once Docker's record of id holds every change followed so far (or refused it and the cgroup went back). */
  async flush(id: string): Promise<void> {
    for (let p = this.running.get(id); p; p = this.running.get(id)) await p;
  }

  /** Every container's record flushed, at most timeoutMs (what is left is caught up at the next start). */
  async close(timeoutMs: number): Promise<void> {
    await atMost(Promise.all([...this.running.keys()].map((id) => this.flush(id))), timeoutMs);
    this.closed = true;
  }

  /** The container is gone: nothing more to tell Docker of it. */
  forget(id: string): void {
    this.queued.delete(id);
    this.changedAt.delete(id);
  }

  /** Until the container's limits have not changed for QUIET_MS. */
  private async quiet(id: string): Promise<void> {
    for (;;) {
      const wait = (this.changedAt.get(id) ?? 0) + QUIET_MS - Date.now();
      if (wait <= 0 || this.closed) return;
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  private async drain(id: string): Promise<void> {
    /** A change was refused and taken out of the cgroup: those queued after it go back in once Docker takes them. */
    let reverted = false;
    let backoffMs = 100;
    try {
      await this.quiet(id);
      for (let b = this.queued.get(id); b; b = this.queued.get(id)) {
        this.queued.delete(id);
        try {
          const call = this.write(id, b.body);
          this.sending.set(id, call);
          try {
            await call;
          } finally {
            this.sending.delete(id);
          }
          backoffMs = 100;
          if (reverted) this.rewrite(b);
          // Docker's update writes the running container's cgroup with what it was sent: a change
          // followed meanwhile (the driver waits for idle(), so only one that did not) was just
          // overwritten with an older value, and goes back in at once.
          const next = this.queued.get(id);
          if (next) this.rewrite(next);
        } catch (err) {
          if (gone(err)) return;
          if (!refusal(err)) {
            if (this.closed) return;
            this.requeue(id, b);
            this.onRetry(id, err, backoffMs);
            await new Promise((r) => setTimeout(r, backoffMs));
            backoffMs = Math.min(backoffMs * 2, 5_000);
            continue;
          }
          let applied: Resources | undefined;
          try {
            this.fs.applyLimits(b.cgroup, b.revert);
            applied = this.fs.readLimits(b.cgroup);
          } catch {
            /* the container went away meanwhile */
          }
          // A later change queued meanwhile started from values that are now undone.
          const next = this.queued.get(id);
          if (next) {
            for (const k of Object.keys(next.revert) as Array<keyof ResourceChange>) if (k in b.revert) (next.revert as Record<string, unknown>)[k] = b.revert[k];
            reverted = true;
          }
          if (applied) this.onRefused(id, err, applied);
        }
      }
    } finally {
      this.running.delete(id);
    }
  }

  private rewrite(b: Batch): void {
    try {
      this.fs.applyLimits(b.cgroup, b.change);
    } catch {
      /* the container went away meanwhile */
    }
  }

  /** A batch Docker did not answer goes back in front of whatever came after it. */
  private requeue(id: string, b: Batch): void {
    const later = this.queued.get(id);
    this.queued.set(id, later ? { body: { ...b.body, ...later.body }, change: { ...b.change, ...later.change }, revert: { ...later.revert, ...b.revert }, cgroup: later.cgroup } : b);
  }
}
