import { errorMessage, ResourceExhaustedError, UnavailableError, type Logger } from '@agent/grpc-kit';
import { internalv1, v1 } from '@agent/proto';
import { Keys, StoreWriteError, type KvStore, type StoreChange } from '@agent/store';
import { metrics } from '@agent/telemetry';

/** An object as it is recorded: what a restart, even after SIGKILL, starts from. */
export interface ObjectRecordData {
  readonly object: v1.Object;
  readonly runtime: internalv1.RuntimeInfo | undefined;
}

/** An event as it is recorded; request is what to run again when a restart interrupts it. */
export interface EventRecordData {
  readonly event: v1.Event;
  readonly seq: number;
  readonly request: internalv1.PublishRequest | undefined;
}

/** A record that could not be read back: named in the log and in health, skipped, left in place. */
export interface DamagedRecord {
  readonly key: string;
  readonly reason: string;
  /** The object an object record is of (from its key). */
  readonly objectId?: string;
}

/** How long a record given to saveSoon waits for another write to go with. */
const SOON_MS = 5;

interface Soon {
  readonly what: string;
  readonly changes: readonly StoreChange[];
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * agentcore's durable state in the store: object records and events. Every
 * write resolves once the store has it, so the caller acknowledges or reports
 * only what is recorded; a write the store refuses becomes RESOURCE_EXHAUSTED
 * (no room) or UNAVAILABLE (read-only, failing, unreachable), naming the cause.
 */
export class Records {
  /** Records waiting for the next write (saveSoon), in the order given. */
  private soon: Soon[] = [];
  private soonTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: KvStore,
    private readonly hostId: string,
    private readonly log: Logger,
    /** Told of every refused write (health goes NOT_SERVING at once, not at the next check). */
    private readonly onRefused: (err: Error) => void = () => undefined,
  ) {}

  putObject(object: v1.Object, runtime: internalv1.RuntimeInfo | undefined): Promise<void> {
    return this.save(`record object ${object.objectId}`, [this.objectRecord(object, runtime)]);
  }

  deleteObject(objectId: string): Promise<void> {
    return this.save(`remove the record of object ${objectId}`, [this.objectGone(objectId)]);
  }

  putEvent(e: EventRecordData): Promise<void> {
    return this.save(`record event ${e.event.eventId}`, [this.eventRecord(e)]);
  }

  deleteEvent(eventId: string): Promise<void> {
    return this.save(`remove event ${eventId}`, [{ key: Keys.event(this.hostId, eventId), value: undefined }]);
  }

  /** The object's record, to be written (save) with others. */
  objectRecord(object: v1.Object, runtime: internalv1.RuntimeInfo | undefined): StoreChange {
    const value = JSON.stringify({ object: v1.Object.toJSON(object), runtime: runtime ? internalv1.RuntimeInfo.toJSON(runtime) : null });
    return { key: Keys.workload(this.hostId, object.objectId), value };
  }

  /** The removal of an object's record, to be written (save) with others. */
  objectGone(objectId: string): StoreChange {
    return { key: Keys.workload(this.hostId, objectId), value: undefined };
  }

  /** The event's record, to be written (save) with others. */
  eventRecord(e: EventRecordData): StoreChange {
    const value = JSON.stringify({ event: v1.Event.toJSON(e.event), seq: e.seq, request: e.request ? internalv1.PublishRequest.toJSON(e.request) : null });
    return { key: Keys.event(this.hostId, e.event.eventId), value };
  }

  /**
   * Writes the records as one write (the embedded store: one transaction, all
   * or none); what names them in an error. Records waiting in saveSoon go in
   * the same write, first; if that write is refused, they fail with it and
   * these are tried once more alone.
   */
  async save(what: string, changes: readonly StoreChange[]): Promise<void> {
    const carried = this.takeSoon();
    if (carried.length === 0) return this.write(what, () => this.store.apply(changes));
    const all = [...carried.flatMap((c) => c.changes), ...changes];
    try {
      await this.write(carried.length === 1 && changes.length === 0 ? carried[0]!.what : what, () => this.store.apply(all));
    } catch (err) {
      for (const c of carried) c.reject(err);
      if (changes.length === 0) throw err;
      return this.write(what, () => this.store.apply(changes));
    }
    for (const c of carried) c.resolve();
  }

  /**
   * Records that may wait for the next write (a finished event's outcome,
   * after its answer): they go with it, in one transaction and one sync, or
   * alone SOON_MS from now if no write comes first. Resolves once written.
   */
  saveSoon(what: string, changes: readonly StoreChange[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.soon.push({ what, changes, resolve, reject });
      this.soonTimer ??= setTimeout(() => void this.flush().catch(() => undefined), SOON_MS);
    });
  }

  /** Writes the records waiting in saveSoon now (before an answer that must see them, and at exit). */
  async flush(): Promise<void> {
    if (this.soon.length > 0) await this.save('record the outcome of finished events', []);
  }

  private takeSoon(): Soon[] {
    const carried = this.soon;
    if (carried.length === 0) return carried;
    this.soon = [];
    clearTimeout(this.soonTimer);
    this.soonTimer = undefined;
    return carried;
  }

  /** The fleet's network policy (config.network), as JSON, if it still is what was read (false: another agent wrote it meanwhile). */
  async putPolicyIf(value: string, read: string | undefined): Promise<boolean> {
    let written = false;
    await this.write('record the network policy', async () => {
      written = await this.store.putIf(Keys.network, value, read);
    });
    return written;
  }

  getPolicy(): Promise<string | undefined> {
    return this.store.get(Keys.network);
  }

  /** What every agent of the fleet learned: [host, JSON] pairs. */
  async listLearned(): Promise<Array<[string, string]>> {
    return (await this.store.list(Keys.learnedAll)).map(([k, v]) => [k.slice(Keys.learnedAll.length), v]);
  }

  /** The rules this host learned (config.learned.<host>), as JSON. */
  putLearned(value: string): Promise<void> {
    return this.write('record the learned network rules', () => this.store.put(Keys.learned(this.hostId), value));
  }

  /** Every object record of this host; one that cannot be read is named, not fatal. */
  async loadObjects(): Promise<{ records: ObjectRecordData[]; damaged: DamagedRecord[] }> {
    const records: ObjectRecordData[] = [];
    const damaged: DamagedRecord[] = [];
    const prefix = Keys.workloads(this.hostId);
    for (const [key, value] of await this.store.list(prefix)) {
      try {
        const saved = parseObject(value);
        const object = v1.Object.fromJSON(saved.object);
        if (object.objectId !== key.slice(prefix.length)) throw new Error(`object_id ${JSON.stringify(object.objectId)} does not match the key`);
        if (!object.spec || object.spec.name === '' || object.spec.kind === v1.Kind.KIND_UNSPECIFIED) throw new Error('no spec, name or kind');
        records.push({ object, runtime: saved.runtime ? internalv1.RuntimeInfo.fromJSON(saved.runtime) : undefined });
      } catch (err) {
        damaged.push({ key, reason: errorMessage(err), objectId: key.slice(prefix.length) });
      }
    }
    return { records, damaged };
  }

  /** Every event of this host, oldest first. */
  async loadEvents(): Promise<{ records: EventRecordData[]; damaged: DamagedRecord[] }> {
    const records: EventRecordData[] = [];
    const damaged: DamagedRecord[] = [];
    for (const [key, value] of await this.store.list(Keys.events(this.hostId))) {
      try {
        const saved = JSON.parse(value) as { event?: unknown; seq?: unknown; request?: unknown } | null;
        if (!saved || typeof saved !== 'object' || typeof saved.seq !== 'number' || !saved.event) throw new Error('not an event record');
        const event = v1.Event.fromJSON(saved.event);
        if (event.eventId === '' || !key.endsWith(event.eventId)) throw new Error('event_id does not match the key');
        records.push({ event, seq: saved.seq, request: saved.request ? internalv1.PublishRequest.fromJSON(saved.request) : undefined });
      } catch (err) {
        damaged.push({ key, reason: errorMessage(err) });
      }
    }
    records.sort((a, b) => a.seq - b.seq);
    return { records, damaged };
  }

  private async write(what: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      const refused =
        err instanceof StoreWriteError && err.exhausted
          ? new ResourceExhaustedError(`cannot ${what}: ${err.message}`, { cause: err })
          : new UnavailableError(`cannot ${what}: ${errorMessage(err)}`, { cause: err });
      metrics.storeErrors.inc({ cause: refused instanceof ResourceExhaustedError ? 'no_room' : 'unavailable' });
      this.log.error('store write refused', { what, reason: errorMessage(err) });
      this.onRefused(refused);
      throw refused;
    }
  }
}

function parseObject(value: string): { object: unknown; runtime: unknown } {
  const saved = JSON.parse(value) as { object?: unknown; runtime?: unknown } | null;
  if (!saved || typeof saved !== 'object' || !saved.object || typeof saved.object !== 'object') throw new Error('not an object record');
  return { object: saved.object, runtime: saved.runtime };
}
