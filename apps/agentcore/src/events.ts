import { NotFoundError, errorMessage, type Logger } from '@agent/grpc-kit';
import { internalv1, v1 } from '@agent/proto';
import type { StoreChange } from '@agent/store';
import type { EventRecordData, Records } from './records';

const { EventStatus } = v1;

interface Entry {
  readonly event: v1.Event;
  readonly seq: number;
  readonly request: internalv1.PublishRequest | undefined;
}

/**
 * The events agentcore accepted, and the request_ids they answered: recorded
 * before the ack, kept (in the store) for a count and an age, so that GetEvent
 * and a repeated request_id give the same answer after a restart. An event is
 * forgotten only once finished; its request_id goes with it.
 */
export class EventLog {
  /** In seq order (Map keeps insertion order): trimming looks at the head. */
  private readonly entries = new Map<string, Entry>();
  private readonly byRequest = new Map<string, string>();
  private seq = 0;

  constructor(
    private readonly records: Records,
    private readonly retention: { count: number; ageMs: number },
    private readonly log: Logger,
  ) {}

  /** Records a new event (and what to run again if a restart interrupts it); resolves once it is in the store. */
  async add(event: v1.Event, request?: internalv1.PublishRequest): Promise<void> {
    const entry: Entry = { event, seq: ++this.seq, request };
    await this.records.putEvent(entry);
    this.entries.set(event.eventId, entry);
    if (event.requestId !== '') this.byRequest.set(event.requestId, event.eventId);
    this.trim();
  }

  /** Records the outcome; resolves once it is in the store. */
  finish(event: v1.Event, status: v1.EventStatus, error: string): Promise<void> {
    return this.records.save(`record event ${event.eventId}`, [this.settle(event, status, error)]);
  }

  /** Sets the outcome, and returns the event's record for the caller to write (with its object's, Scheduler). */
  settle(event: v1.Event, status: v1.EventStatus, error: string): StoreChange {
    event.status = status;
    event.error = error;
    event.finishedAt = new Date();
    return this.records.eventRecord(this.entries.get(event.eventId) ?? { event, seq: ++this.seq, request: undefined });
  }

  get(eventId: string): v1.Event | undefined {
    return this.entries.get(eventId)?.event;
  }

  /** The event that first answered this request_id, while it is retained. */
  forRequest(requestId: string): v1.Event | undefined {
    const id = requestId === '' ? undefined : this.byRequest.get(requestId);
    return id === undefined ? undefined : this.get(id);
  }

  mustGet(eventId: string): v1.Event {
    const e = this.get(eventId);
    if (!e) throw new NotFoundError(`no event ${eventId}`);
    return e;
  }

  /**
   * After a restart: every recorded event is known again; the ones a kill
   * interrupted (queued or running) are returned, oldest first, to be resumed
   * or settled by the caller.
   */
  async load(): Promise<{ interrupted: EventRecordData[]; damaged: number }> {
    const { records, damaged } = await this.records.loadEvents();
    for (const d of damaged) this.log.error('damaged event record skipped', { key: d.key, reason: d.reason });
    const interrupted: EventRecordData[] = [];
    for (const r of records) {
      this.entries.set(r.event.eventId, r);
      if (r.event.requestId !== '') this.byRequest.set(r.event.requestId, r.event.eventId);
      this.seq = Math.max(this.seq, r.seq);
      if (r.event.status === EventStatus.EVENT_STATUS_QUEUED || r.event.status === EventStatus.EVENT_STATUS_RUNNING) interrupted.push(r);
    }
    this.trim();
    return { interrupted, damaged: damaged.length };
  }

  /** Finished events beyond the count or older than the age go, oldest first. */
  private trim(now = Date.now()): void {
    for (const [id, { event }] of this.entries) {
      const old = now - (event.finishedAt?.getTime() ?? now) > this.retention.ageMs;
      if (this.entries.size <= this.retention.count && !old) break;
      if (!event.finishedAt) continue;
      this.entries.delete(id);
      if (event.requestId !== '' && this.byRequest.get(event.requestId) === id) this.byRequest.delete(event.requestId);
      this.records.deleteEvent(id).catch((err: unknown) => this.log.debug('old event not removed from the store', { eventId: id, reason: errorMessage(err) }));
    }
  }
}
