import { context } from '@opentelemetry/api';
import { DeadlineExceededError, errorMessage, traced, type Logger } from '@agent/grpc-kit';
import { type internalv1, v1 } from '@agent/proto';
import type { EventLog } from './events';
import { newId } from './ids';
import type { ObjectRecord, ObjectTable } from './objects';

const { State, EventStatus, EventType } = v1;

/**
 * The one task worker: config and system tasks on the system queue, events
 * on their object's queue, and how long the oldest of them has waited (what
 * the cluster sync reads).
 */
export class Scheduler {
  private systemQueue: Promise<void> = Promise.resolve();
  private readonly waiting = new Map<symbol, number>();
  private readonly done = new Map<string, Promise<void>>();

  constructor(
    private readonly objects: ObjectTable,
    private readonly events: EventLog,
    private readonly opts: { waitTimeoutMs: number },
    private readonly log: Logger,
  ) {}

  /** Config and system tasks run one at a time, in order, on their own queue. */
  system(name: string, fn: () => Promise<void> | void): Promise<void> {
    const token = Symbol(name);
    this.waiting.set(token, Date.now());
    const run = this.systemQueue.then(async () => {
      this.waiting.delete(token);
      try {
        await fn();
      } catch (err) {
        this.log.warn('system task failed', { task: name, err });
      }
    });
    this.systemQueue = run;
    return run;
  }

  /** Events and system tasks waiting to run. */
  depth(): number {
    return this.waiting.size;
  }

  oldestWaitMs(): number {
    let oldest = Infinity;
    for (const t of this.waiting.values()) oldest = Math.min(oldest, t);
    return oldest === Infinity ? 0 : Date.now() - oldest;
  }

  /** A new event: recorded in the store, then queued; the ack answers only what is recorded. */
  async enqueue(rec: ObjectRecord, type: v1.EventType, requestId: string, request: internalv1.PublishRequest | undefined, run: () => Promise<void>, undo?: () => void): Promise<v1.EventAck> {
    const eventId = newId('evt');
    const event: v1.Event = { eventId, objectId: rec.object.objectId, type, status: EventStatus.EVENT_STATUS_QUEUED, error: '', requestId, createdAt: new Date(), finishedAt: undefined };
    try {
      await this.events.add(event, request);
    } catch (err) {
      undo?.();
      throw err;
    }
    this.schedule(rec, event, run);
    return this.ack(eventId);
  }

  /**
   * Runs a recorded event on its object's queue, in order with the object's
   * other events. The answer (awaitAck) comes once the outcome is settled.
   * The outcome of an event that changed its object (commitWithEvent) is
   * recorded with the object's change in one write; when it succeeded and no
   * other event is waiting, that write goes with the next one (Records.saveSoon): one sync
   * on the answer's path (the event's own record, made before its work), not
   * two. The object's next event runs once it is written. A kill before then
   * finds the event unfinished at the next start, which runs it again (each
   * such event sets values, so running it twice ends the same).
   */
  schedule(rec: ObjectRecord, event: v1.Event, run: () => Promise<void>): void {
    const { eventId, type } = event;
    // The event carries the caller's trace across the asynchronous hop.
    const caller = context.active();
    const token = Symbol(eventId);
    this.waiting.set(token, Date.now());
    let answer!: () => void;
    const answered = new Promise<void>((r) => (answer = r));
    const attributes = { 'agent.object_id': rec.object.objectId, 'agent.event_id': eventId, 'agent.object.kind': v1.Kind[rec.object.spec?.kind ?? 0] ?? '' };
    const finished = rec.queue.then(() =>
      context.with(caller, () =>
        traced(`agentcore ${EventType[type]}`, attributes, async () => {
          this.waiting.delete(token);
          event.status = EventStatus.EVENT_STATUS_RUNNING;
          let failure: unknown;
          try {
            await run();
          } catch (err) {
            failure = err;
            this.log.warn('event failed', { eventId, objectId: rec.object.objectId, type: EventType[type], error: errorMessage(err) });
          }
          const outcome = failure === undefined ? EventStatus.EVENT_STATUS_SUCCEEDED : EventStatus.EVENT_STATUS_FAILED;
          const message = failure === undefined ? '' : errorMessage(failure);
          // A failed event's outcome is written before its answer: run again after a restart, it might succeed, and the caller was told it did not.
          if (rec.settlesWithEvent && failure === undefined && this.waiting.size === 0) {
            const recorded = this.objects.commit(rec, [this.events.settle(event, outcome, message)], true);
            answer();
            await recorded.catch((err: unknown) => this.log.error('event outcome not recorded; the next start runs the event again', { eventId, reason: errorMessage(err) }));
          } else {
            try {
              // The object's last change and the outcome in one write, never one without the other.
              if (rec.settlesWithEvent) await this.objects.commit(rec, [this.events.settle(event, outcome, message)]);
              else await this.events.finish(event, outcome, message);
            } catch (err) {
              // Not recorded: the answer must not say done (a restart resumes the event).
              if (failure === undefined) {
                event.status = EventStatus.EVENT_STATUS_FAILED;
                event.error = errorMessage(err);
              }
              this.log.error('event outcome not recorded', { eventId, reason: errorMessage(err) });
            }
          }
          if (failure !== undefined) throw failure;
        })
          .catch(() => undefined)
          .finally(answer),
      ),
    );
    rec.queue = finished;
    this.done.set(eventId, answered);
    void answered.then(() => this.done.delete(eventId));
  }

  ack(eventId: string): v1.EventAck {
    const e = this.events.get(eventId);
    const rec = e ? this.objects.get(e.objectId) : undefined;
    return {
      eventId,
      objectId: e?.objectId ?? '',
      state: rec?.object.state ?? State.STATE_UNSPECIFIED,
      status: e?.status ?? EventStatus.EVENT_STATUS_UNSPECIFIED,
      error: e?.error ?? '',
    };
  }

  async awaitAck(eventId: string): Promise<v1.EventAck> {
    const p = this.done.get(eventId);
    if (p) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), this.opts.waitTimeoutMs)));
      const outcome = await Promise.race([p.then(() => 'done' as const), timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') throw new DeadlineExceededError(`event ${eventId} still running after ${this.opts.waitTimeoutMs} ms; poll GetEvent`);
    }
    return this.ack(eventId);
  }
}
