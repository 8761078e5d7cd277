// An event's outcome on a real embedded store: the object's last change and
// the event's outcome are one write on the answer's path, and an outcome the
// store refuses is not answered as done. The store is LMDB on a tmpfs of its
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

const spec = (name: string): v1.ObjectSpec => v1.ObjectSpec.fromPartial({ name, kind: v1.Kind.KIND_PROCESS, process: { command: ['sleep', '1'] } });

describe('an event and its object, on the store', () => {
  let disk: Tmpfs;
  before(() => (disk = mountTmpfs('16m')));
  after(() => disk.unmount());

  it('writes the object\'s last change and the outcome as one write, and tells watchers after it', async () => {
    const dir = `${disk.dir}/one`;
    const a = await open(dir);
    const rec = await a.objects.claim(spec('one'));
    a.writes.length = 0;
    const told: v1.Object[] = [];
    a.objects.onChange(rec.object.objectId, (o) => told.push(o));
    const ack = await a.scheduler.enqueue(rec, EventType.EVENT_TYPE_UPDATE, 'req-1', undefined, async () => {
      rec.object.spec!.labels = { tier: 'web' };
      a.objects.commitWithEvent(rec);
    });
    const done = await a.scheduler.awaitAck(ack.eventId);
    assert.equal(done.status, EventStatus.EVENT_STATUS_SUCCEEDED, done.error);
    assert.deepEqual(
      a.writes.map((w) => w.map((c) => c.key.split('.')[0])),
      [['events'], ['workloads', 'events']],
      'two writes: the event when accepted; the object and the outcome together',
    );
    assert.deepEqual(told.map((o) => o.spec?.labels), [{ tier: 'web' }]);
    await a.store.close();

    const b = await open(dir);
    const { records } = await b.objects.load();
    assert.deepEqual(records.map((r) => r.object.spec?.labels), [{ tier: 'web' }]);
    const { interrupted } = await b.events.load();
    assert.deepEqual(interrupted, [], 'the event is recorded as finished');
    assert.equal(b.events.get(ack.eventId)?.status, EventStatus.EVENT_STATUS_SUCCEEDED);
    await b.store.close();
  });

  it('answers FAILED, naming the store, when the outcome cannot be recorded; a restart finds the event still to run', async () => {
    const dir = `${disk.dir}/refused`;
    const a = await open(dir);
    const rec = await a.objects.claim(spec('refused'));
    const filler = `${disk.dir}/filler`;
    const ack = await a.scheduler.enqueue(rec, EventType.EVENT_TYPE_UPDATE, 'req-2', undefined, async () => {
      // Something else takes the disk while the event runs; the change is larger than the room the store holds ahead.
      fillDisk(filler);
      rec.object.spec!.labels = { tier: 'x'.repeat(6 * 1024 * 1024) };
      a.objects.commitWithEvent(rec);
    });
    const done = await a.scheduler.awaitAck(ack.eventId);
    fs.rmSync(filler);
    assert.equal(done.status, EventStatus.EVENT_STATUS_FAILED, 'not answered as done');
    assert.match(done.error, /cannot record object .*no space left on device/);
    await a.store.close();

    const b = await open(dir);
    const { records } = await b.objects.load();
    assert.deepEqual(records.map((r) => r.object.spec?.labels), [{}], 'the change is not recorded');
    const { interrupted } = await b.events.load();
    assert.deepEqual(interrupted.map((r) => r.event.eventId), [ack.eventId], 'the accepted event is resumed at a restart');
    await b.store.close();
  });
});
