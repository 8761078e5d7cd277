import type { ClientReadableStream } from '@grpc/grpc-js';
import { NotFoundError, errorMessage, type Logger, type Peer } from '@agent/grpc-kit';
import { listPage } from '@agent/kinds';
import { v1, type internalv1 } from '@agent/proto';
import type { ObjectReads } from './apiserver';

/** How long a read waits for the copy to reach a change made before it, before asking agentcore instead. */
const CATCH_UP_MS = 500;
const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 5_000;

/**
 * The apiserver's copy of agentcore's objects (five processes), kept by
 * agentcore's WatchObjects stream: every object, then each change, each
 * with the revision it made. Get and List answer from it, one hop. A read
 * sees every change that was answered before it began (read your writes):
 * after a change made through this apiserver, the next read asks agentcore
 * for its revision once and waits for the copy to reach it. While the
 * stream is down (agentcore restarting) or the copy is behind for longer
 * than CATCH_UP_MS, reads go to agentcore as before (fallback).
 */
export class ObjectCopy implements ObjectReads {
  private objects = new Map<string, v1.Object>();
  private revision = 0;
  private synced = false;
  private stream: ClientReadableStream<internalv1.ObjectsChange> | undefined;
  private stopped = false;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Changes answered through this apiserver; the revision asked for after the last of them. */
  private changes = 0;
  private askedAfter = 0;
  private asked: Promise<number> = Promise.resolve(0);
  private readonly waiting = new Set<{ revision: number; resolve: () => void }>();

  constructor(
    private readonly core: Peer<internalv1.AgentCoreClient>,
    private readonly fallback: ObjectReads,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.stream?.cancel();
    this.synced = false;
  }

  /** A change through this apiserver was answered: reads from here on must see it. */
  changed(): void {
    this.changes++;
  }

  async getObject(objectId: string): Promise<v1.Object> {
    if (!(await this.current())) return this.fallback.getObject(objectId);
    const o = this.objects.get(objectId);
    if (!o) throw new NotFoundError(`no object ${objectId}`);
    return v1.Object.fromPartial(o);
  }

  async listObjects(req: v1.ListRequest): Promise<v1.ListResponse> {
    if (!(await this.current())) return this.fallback.listObjects(req);
    return listPage(this.objects.values(), req);
  }

  /** Whether the copy holds every change answered before this read (waiting for it a little). */
  private async current(): Promise<boolean> {
    if (!this.synced) return false;
    if (this.changes !== this.askedAfter) {
      this.askedAfter = this.changes;
      this.asked = this.core.call('objectsRevision', {}, { timeoutMs: 2_000 }).then((r) => r.revision);
      // A failed ask is asked again by the next read.
      this.asked.catch(() => (this.askedAfter = -1));
    }
    let wanted: number;
    try {
      wanted = await this.asked;
    } catch {
      return false;
    }
    if (this.revision >= wanted) return this.synced;
    return new Promise<boolean>((resolve) => {
      const w = {
        revision: wanted,
        resolve: () => {
          clearTimeout(timer);
          this.waiting.delete(w);
          resolve(this.synced && this.revision >= wanted);
        },
      };
      const timer = setTimeout(w.resolve, CATCH_UP_MS);
      this.waiting.add(w);
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const fresh = new Map<string, v1.Object>();
    this.objects = fresh;
    this.synced = false;
    const stream = this.core.client.watchObjects({}, this.core.traceMetadata());
    this.stream = stream;
    stream.on('data', (c: internalv1.ObjectsChange) => {
      if (c.object) this.objects.set(c.object.objectId, c.object);
      if (c.goneId !== '') this.objects.delete(c.goneId);
      this.revision = c.revision;
      if (c.synced) {
        this.synced = true;
        this.retryMs = RETRY_MIN_MS;
        this.log.debug('object copy in sync', { objects: this.objects.size, revision: c.revision });
      }
      for (const w of this.waiting) if (this.revision >= w.revision) w.resolve();
    });
    const lost = (reason: string): void => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.synced = false;
      for (const w of this.waiting) w.resolve();
      if (this.stopped) return;
      this.log.debug('object copy lost its stream; reads go to agentcore until it is back', { reason, retryMs: this.retryMs });
      this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    };
    stream.on('error', (err: Error) => lost(errorMessage(err)));
    stream.on('end', () => lost('ended'));
  }
}
