// An event's outcome on a real embedded store: the object's last change and
// the event's outcome are one write, after the answer and with the next write
// when nothing else waits; an outcome the store refuses while others wait is
// not answered as done. The store is LMDB on a tmpfs of its
// own (filled to refuse); the count of writes is read through
// the store's own interface, nothing is answered for it.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Logger } from '@agent/grpc-kit';
import { Module } from '@agent/option';
import { v1 } from '@agent/proto';
import { LmdbStore, type KvStore, type StoreChange } from '@agent/store';
import { fillDisk, mountTmpfs, type Tmpfs } from '@agent/testkit';
import { EventLog } from './events';
import { ObjectTable } from './objects';
import { Records } from './records';
import { Scheduler } from './scheduler';

const { EventStatus, EventType } = v1;
const log = new Logger(Module.AgentCore, 'error');
const HOST = 'h1';

/** The store, with every apply it is given (the writes an event makes). */
function counted(store: KvStore): { store: KvStore; writes: StoreChange[][] } {
  const writes: StoreChange[][] = [];
  const apply = store.apply.bind(store);
  store.apply = (changes) => {
    writes.push([...changes]);
    return apply(changes);
  };
  return { store, writes };
}

async function open(dir: string): Promise<{ store: LmdbStore; writes: StoreChange[][]; objects: ObjectTable; events: EventLog; scheduler: Scheduler }> {
  const lmdb = await LmdbStore.open(dir);
  const { writes } = counted(lmdb);
  const records = new Records(lmdb, HOST, log);
  const objects = new ObjectTable(records, { discoverManage: false });
  const events = new EventLog(records, { count: 100, ageMs: 3_600_000 }, log);
  return { store: lmdb, writes, objects, events, scheduler: new Scheduler(objects, events, { waitTimeoutMs: 5_000 }, log) };
}

const keys = (writes: StoreChange[][]): string[][] => writes.map((w) => w.map((c) => c.key.split('.')[0]!));

async function waitFor(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(ok(), 'in time');
}

const spec = (name: string): v1.ObjectSpec => v1.ObjectSpec.fromPartial({ name, kind: v1.Kind.KIND_PROCESS, process: { command: ['sleep', '1'] } });

describe('an event and its object, on the store', () => {
  let disk: Tmpfs;
  before(() => (disk = mountTmpfs('16m')));
  after(() => disk.unmount());

  it('answers an update once its work is done, and writes its outcome with the object\'s change in the next write: one sync on the answer\'s path', async () => {
    const dir = `${disk.dir}/one`;
    const a = await open(dir);
    const rec = await a.objects.claim(spec('one'));
    a.writes.length = 0;
    const told: v1.Object[] = [];
    a.objects.onChange(rec.object.objectId, (o) => told.push(o));
    const label = (tier: string) => async () => {
      rec.object.spec!.labels = { tier };
      a.objects.commitWithEvent(rec);
    };
    const first = await a.scheduler.enqueue(rec, EventType.EVENT_TYPE_UPDATE, 'req-1', undefined, label('web'));
    const done = await a.scheduler.awaitAck(first.eventId);
    assert.equal(done.status, EventStatus.EVENT_STATUS_SUCCEEDED, done.error);
    assert.deepEqual(keys(a.writes), [['events']], 'answered after one write: the event, recorded when accepted');
    assert.equal(told.length, 0, 'nobody is told of a change before it is written');

    const second = await a.scheduler.enqueue(rec, EventType.EVENT_TYPE_UPDATE, 'req-2', undefined, label('db'));
    assert.deepEqual(keys(a.writes), [['events'], ['workloads', 'events', 'events']], 'the first outcome goes with the second event: one write');
    assert.equal((await a.scheduler.awaitAck(second.eventId)).status, EventStatus.EVENT_STATUS_SUCCEEDED);
    await waitFor(() => a.writes.length === 3);
    assert.deepEqual(keys(a.writes)[2], ['workloads', 'events'], 'with no write to go with, the last outcome is written alone');
    await waitFor(() => told.length === 2);
    assert.deepEqual(told.map((o) => o.spec?.labels), [{ tier: 'web' }, { tier: 'db' }], 'told once written, in order');
    await a.store.close();

    const b = await open(dir);
    const { records } = await b.objects.load();
    assert.deepEqual(records.map((r) => r.object.spec?.labels), [{ tier: 'db' }]);
    const { interrupted } = await b.events.load();
    assert.deepEqual(interrupted, [], 'both events are recorded as finished');
    assert.equal(b.events.get(second.eventId)?.status, EventStatus.EVENT_STATUS_SUCCEEDED);
    await b.store.close();
  });

  it('a kill between the answer and the outcome\'s write finds the event unfinished, to be run again', async () => {
    const dir = `${disk.dir}/killed`;
    const a = await open(dir);
    const rec = await a.objects.claim(spec('killed'));
    const ack = await a.scheduler.enqueue(rec, EventType.EVENT_TYPE_UPDATE, 'req-3', undefined, async () => {
      rec.object.spec!.labels = { tier: 'web' };
      a.objects.commitWithEvent(rec);
    });
    assert.equal((await a.scheduler.awaitAck(ack.eventId)).status, EventStatus.EVENT_STATUS_SUCCEEDED);
    // What a SIGKILL now would leave: the database file as it is at this moment.
    fs.mkdirSync(`${dir}-copy`);
    fs.copyFileSync(`${dir}/agent.mdb`, `${dir}-copy/agent.mdb`);
    await waitFor(() => a.writes.length === 3);
    await a.store.close();

    const b = await open(`${dir}-copy`);
    const { interrupted } = await b.events.load();
    assert.deepEqual(interrupted.map((r) => r.event.eventId), [ack.eventId], 'resumed at the next start');
    await b.store.close();
  });

  it('a failed event\'s outcome is written before its answer: a restart never runs it again', async () => {
    const dir = `${disk.dir}/failed`;
    const a = await open(dir);
    const rec = await a.objects.claim(spec('failed'));
    a.writes.length = 0;
    const ack = await a.scheduler.enqueue(rec, EventType.EVENT_TYPE_UPDATE, 'req-6', undefined, async () => {
      rec.object.lastError = 'update: kernel refused';
      a.objects.commitWithEvent(rec);
      throw new Error('kernel refused');
    });
    const done = await a.scheduler.awaitAck(ack.eventId);
    assert.equal(done.status, EventStatus.EVENT_STATUS_FAILED);
    assert.deepEqual(keys(a.writes), [['events'], ['workloads', 'events']], 'the outcome was written when the answer came');
    await a.store.close();
    const b = await open(dir);
    const { interrupted } = await b.events.load();
    assert.deepEqual(interrupted, [], 'finished as FAILED, not to be run again');
    await b.store.close();
  });

  it('answers FAILED, naming the store, when the outcome cannot be recorded while other events wait; a restart finds the event still to run', async () => {
    const dir = `${disk.dir}/refused`;
    const a = await open(dir);
    const rec = await a.objects.claim(spec('refused'));
    const filler = `${disk.dir}/filler`;
    let queued!: () => void;
    const secondQueued = new Promise<void>((r) => (queued = r));
    const ack = await a.scheduler.enqueue(rec, EventType.EVENT_TYPE_UPDATE, 'req-4', undefined, async () => {
      await secondQueued;
      // Something else takes the disk while the event runs; the change is larger than the room the store holds ahead.
      fillDisk(filler);
      rec.object.spec!.labels = { tier: 'x'.repeat(6 * 1024 * 1024) };
      a.objects.commitWithEvent(rec);
    });
    // A second event queued behind it: the first outcome is written at once, not held for a later write.
    const next = await a.scheduler.enqueue(rec, EventType.EVENT_TYPE_PUSH_OFF, 'req-5', undefined, async () => undefined);
    queued();
    const done = await a.scheduler.awaitAck(ack.eventId);
    assert.equal(done.status, EventStatus.EVENT_STATUS_FAILED, 'not answered as done');
    assert.match(done.error, /cannot record object .*no space left on device/);
    await a.scheduler.awaitAck(next.eventId);
    fs.rmSync(filler);
    await a.store.close();

    const b = await open(dir);
    const { records } = await b.objects.load();
    assert.deepEqual(records.map((r) => r.object.spec?.labels), [{}], 'the change is not recorded');
    const { interrupted } = await b.events.load();
    assert.deepEqual(interrupted.map((r) => r.event.eventId), [ack.eventId], 'the accepted event is resumed at a restart');
    await b.store.close();
  });
});
