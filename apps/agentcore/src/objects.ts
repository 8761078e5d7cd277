import { EventEmitter } from 'node:events';
import { AlreadyExistsError, Encoded, FailedPreconditionError, NotFoundError } from '@agent/grpc-kit';
import { listPage } from '@agent/kinds';
import { internalv1, v1 } from '@agent/proto';
import type { StoreChange } from '@agent/store';
import { enumLabel } from '@agent/telemetry';
import { newId } from './ids';
import type { DamagedRecord, ObjectRecordData, Records } from './records';

const { State } = v1;

export interface ObjectRecord {
  readonly object: v1.Object;
  runtime?: internalv1.RuntimeInfo;
  hasCollectTask: boolean;
  /** A Delete is published: later events are refused at once. */
  deleteRequested: boolean;
  /** Changed by the running event, to be recorded with its outcome (commitWithEvent). */
  settlesWithEvent?: boolean;
  /** The tail of this object's event queue: events run in order per object. */
  queue: Promise<void>;
  /** The object's wire form, made by the first Get after a change (ObjectTable.encoded); dropped where a change is committed or marked to be. */
  encoded?: Encoded<v1.Object>;
}

/**
 * The objects agentcore knows, by id and by name, and the one owner of their
 * state: every change is recorded in the store, then told to watchers; the
 * checks an event makes of its object are made here.
 */
export class ObjectTable {
  private readonly objects = new Map<string, ObjectRecord>();
  private readonly names = new Map<string, string>();
  private readonly changes = new EventEmitter();
  /** Counts every change of the table; it starts from the clock, so it only grows, also across restarts. */
  private revision = Date.now() * 1000;

  constructor(
    private readonly records: Records,
    private readonly opts: { discoverManage: boolean },
  ) {
    this.changes.setMaxListeners(0);
  }

  /** The revision of the table now (see told). */
  revisionNow(): number {
    return this.revision;
  }

  /** Calls fn with every change of the table from now on (an object as it now is, or the id of one forgotten), until the returned function is called. */
  onTableChange(fn: (c: internalv1.ObjectsChange) => void): () => void {
    this.changes.on(TABLE_CHANGE, fn);
    return () => this.changes.off(TABLE_CHANGE, fn);
  }

  /** A change of the table that a copy must follow: the object as it now is, or gone. */
  private told(object: v1.Object | undefined, goneId = ''): void {
    this.revision++;
    if (this.changes.listenerCount(TABLE_CHANGE) === 0) return;
    this.changes.emit(TABLE_CHANGE, { revision: this.revision, object: object && v1.Object.fromPartial(object), goneId, synced: false } satisfies internalv1.ObjectsChange);
  }

  get(objectId: string): ObjectRecord | undefined {
    return this.objects.get(objectId);
  }

  /** Every object, in the order they became known; one added or removed meanwhile is seen or skipped. */
  all(): IterableIterator<ObjectRecord> {
    return this.objects.values();
  }

  existing(objectId: string): ObjectRecord {
    const rec = this.objects.get(objectId);
    if (!rec) throw new NotFoundError(`no object ${objectId}`);
    return rec;
  }

  /** An object that can still take events: not deleted, not being deleted, not failed. */
  live(objectId: string, what: string): ObjectRecord {
    const rec = this.existing(objectId);
    if (rec.object.state === State.STATE_DELETED || rec.deleteRequested) throw new FailedPreconditionError(`cannot ${what} object ${objectId}: it is deleted`);
    if (rec.object.state === State.STATE_FAILED) throw new FailedPreconditionError(`cannot ${what} object ${objectId}: it failed (${rec.object.lastError}); delete it`);
    return rec;
  }

  /** A container the agent only discovered is someone else's: watched, not changed, unless AGENT_DISCOVER_MANAGE allows it. */
  requireManaged(rec: ObjectRecord, what: string): void {
    if (rec.object.origin !== v1.Origin.ORIGIN_DISCOVERED || this.opts.discoverManage) return;
    throw new FailedPreconditionError(`cannot ${what} object ${rec.object.objectId}: not managed by this agent (a discovered container; AGENT_DISCOVER_MANAGE=true allows it)`);
  }

  /**
   * A cgroup object's group is its own: not another's, not inside or around
   * another's (deleting one would take the other's with it, or fail half-way).
   * Checked in the same turn as the object is claimed, so two creates cannot race past it.
   */
  private requireOwnCgroup(path: string): void {
    for (const { object } of this.objects.values()) {
      const other = object.spec?.cgroup?.path;
      if (other === undefined || object.state === State.STATE_DELETED) continue;
      if (other === path) throw new AlreadyExistsError(`spec.cgroup.path: cgroup ${path} is held by ${object.objectId}`);
      if (path.startsWith(`${other}/`)) throw new FailedPreconditionError(`spec.cgroup.path: ${path} is inside cgroup ${other} of ${object.objectId}; cgroup objects may not nest`);
      if (other.startsWith(`${path}/`)) throw new FailedPreconditionError(`spec.cgroup.path: ${path} would hold cgroup ${other} of ${object.objectId}; cgroup objects may not nest`);
    }
  }

  /** A new object, PENDING, its name and cgroup claimed and its record in the store; nothing is claimed if the store refuses. */
  async claim(spec: v1.ObjectSpec): Promise<ObjectRecord> {
    const name = spec.name;
    const holder = this.names.get(name);
    if (holder !== undefined) throw new AlreadyExistsError(`name ${JSON.stringify(name)} is in use by ${holder}`);
    if (spec.cgroup) this.requireOwnCgroup(spec.cgroup.path);
    const objectId = newId('obj');
    const now = new Date();
    const rec: ObjectRecord = {
      object: {
        objectId,
        spec,
        state: State.STATE_PENDING,
        runtimeId: '',
        pid: 0,
        createdAt: now,
        updatedAt: now,
        lastError: '',
        pushing: false,
        pushIntervalMs: 0,
        appliedResources: undefined,
        origin: v1.Origin.ORIGIN_CREATED,
        groups: [],
        ip: '',
        quarantined: false,
        enforcement: v1.Enforcement.ENFORCEMENT_UNSPECIFIED,
        policyRevision: 0,
      },
      hasCollectTask: false,
      deleteRequested: false,
      queue: Promise.resolve(),
    };
    this.objects.set(objectId, rec);
    this.names.set(name, objectId);
    try {
      await this.records.putObject(rec.object, rec.runtime);
    } catch (err) {
      this.unmake(rec);
      throw err;
    }
    this.told(rec.object);
    return rec;
  }

  /** A claimed object whose create could not be queued: it goes at once, its record as soon as the store lets it. */
  async unclaim(rec: ObjectRecord): Promise<void> {
    this.unmake(rec);
    // If this fails too, the PENDING record comes back after a restart as a FAILED object, to be deleted.
    await this.records.deleteObject(rec.object.objectId).catch(() => undefined);
  }

  private unmake(rec: ObjectRecord): void {
    this.objects.delete(rec.object.objectId);
    this.names.delete(rec.object.spec?.name ?? '');
    this.told(undefined, rec.object.objectId);
  }

  /** After a restart: a recorded object is known again; a DELETED one has given up its name. */
  restore(saved: ObjectRecordData): ObjectRecord {
    const object = saved.object;
    const rec: ObjectRecord = { object, runtime: saved.runtime, hasCollectTask: false, deleteRequested: false, queue: Promise.resolve() };
    this.objects.set(object.objectId, rec);
    if (object.state !== State.STATE_DELETED) this.names.set(object.spec?.name ?? '', object.objectId);
    this.told(object);
    return rec;
  }

  /** Every object record of this host, as the store has them. */
  load(): Promise<{ records: ObjectRecordData[]; damaged: DamagedRecord[] }> {
    return this.records.loadObjects();
  }

  /** A workload found running, as a new PENDING object; a name already held gets a suffix from its id. */
  discovered(objectId: string, spec: v1.ObjectSpec): ObjectRecord {
    if (this.names.has(spec.name)) spec.name = `${spec.name}-${objectId.slice(4, 10)}`;
    const now = new Date();
    const rec: ObjectRecord = {
      object: v1.Object.fromPartial({ objectId, spec, state: State.STATE_PENDING, createdAt: now, updatedAt: now, origin: v1.Origin.ORIGIN_DISCOVERED }),
      hasCollectTask: false,
      deleteRequested: false,
      queue: Promise.resolve(),
    };
    this.objects.set(objectId, rec);
    this.names.set(spec.name, objectId);
    this.told(rec.object);
    return rec;
  }

  /** Removes the object's record, then the object; one whose record stays is kept. */
  async remove(rec: ObjectRecord): Promise<void> {
    await this.records.deleteObject(rec.object.objectId);
    this.unmake(rec);
  }

  /** The name is free for a new object (this one is, or is about to be, DELETED). */
  releaseName(rec: ObjectRecord): void {
    this.names.delete(rec.object.spec?.name ?? '');
  }

  /** Forgets objects deleted before t (their records are already gone). */
  dropDeletedBefore(t: number): number {
    let n = 0;
    for (const [id, { object }] of this.objects) {
      if (object.state === State.STATE_DELETED && (object.updatedAt?.getTime() ?? 0) < t) {
        this.objects.delete(id);
        this.told(undefined, id);
        n++;
      }
    }
    return n;
  }

  summary(): Record<string, number> {
    const out: Record<string, number> = { objects: 0, pushing: 0 };
    for (const { object } of this.objects.values()) {
      const k = `state_${enumLabel(State, object.state, 'STATE_')}`;
      out[k] = (out[k] ?? 0) + 1;
      out.objects = (out.objects ?? 0) + 1;
      if (object.pushing) out.pushing = (out.pushing ?? 0) + 1;
    }
    return out;
  }

  setRuntime(rec: ObjectRecord, rt: internalv1.RuntimeInfo): void {
    rec.encoded = undefined;
    rec.runtime = rt;
    rec.object.runtimeId = rt.runtimeId;
    rec.object.pid = rt.pid;
    rec.object.appliedResources = rt.applied;
    rec.object.exitCode = rt.running ? undefined : rt.exitCode;
    rec.object.ip = rt.running ? rt.ip : '';
  }

  setState(rec: ObjectRecord, state: v1.State, lastError: string): Promise<void> {
    rec.object.state = state;
    rec.object.lastError = lastError;
    return this.commit(rec);
  }

  /**
   * Records the object's change, then tells watchers: nobody hears of a state
   * the store does not have, and a restart, even after SIGKILL, starts from
   * it. A deleted workload's record goes (the object stays visible here until
   * cleanup). also: other records written in the same write (its event's
   * outcome). soon: the write may wait for the next one (Records.saveSoon);
   * the record is taken now.
   */
  async commit(rec: ObjectRecord, also: readonly StoreChange[] = [], soon = false): Promise<void> {
    rec.encoded = undefined;
    rec.object.updatedAt = new Date();
    rec.settlesWithEvent = false;
    const { objectId } = rec.object;
    const record = rec.object.state === State.STATE_DELETED ? this.records.objectGone(objectId) : this.records.objectRecord(rec.object, rec.runtime);
    const what = `record object ${objectId}`;
    await (soon ? this.records.saveSoon(what, [record, ...also]) : this.records.save(what, [record, ...also]));
    this.told(rec.object);
    if (this.changes.listenerCount(objectId) > 0) this.changes.emit(objectId, v1.Object.fromPartial(rec.object));
    this.changes.emit(ANY_CHANGE, rec);
  }

  /**
   * The running event's last change of the object: recorded (and told) with
   * the event's outcome, in one write, when the event ends (Scheduler).
   */
  commitWithEvent(rec: ObjectRecord): void {
    rec.encoded = undefined;
    rec.settlesWithEvent = true;
  }

  /** Calls fn with every object whose change is committed, whichever object it is. */
  onAnyChange(fn: (rec: ObjectRecord) => void): void {
    this.changes.on(ANY_CHANGE, fn);
  }

  /** Calls fn with each committed change of the object until the returned function is called. */
  onChange(objectId: string, fn: (o: v1.Object) => void): () => void {
    this.changes.on(objectId, fn);
    return () => this.changes.off(objectId, fn);
  }

  /**
   * The object as Get sends it, encoded once per change: a read of an object
   * is far more common than its change, and encoding is most of what a Get
   * of one costs. Every change of an object ends in commit or
   * commitWithEvent, in the same turn as its last assignment (setRuntime
   * too), and each drops the encoding; a Get between an in-place change and
   * that call, across the change's await, may show the object as it was
   * before it, never a mix (the encoding is made in one turn).
   */
  encoded(objectId: string): Encoded<v1.Object> {
    const rec = this.existing(objectId);
    return (rec.encoded ??= new Encoded(v1.AgentServiceService.get.responseSerialize(rec.object)));
  }

  /** One page of the matching objects, in object_id order, bounded in count and in bytes. */
  list(req: v1.ListRequest): v1.ListResponse {
    return listPage(Array.from(this.objects.values(), (r) => r.object), req);
  }
}

/** The change event of every object (object ids are strings; this cannot be one). */
const ANY_CHANGE = Symbol('any object');
/** Every change of the table, for copies of it. */
const TABLE_CHANGE = Symbol('table');
