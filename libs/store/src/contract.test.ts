// One contract, two backends: the embedded database and a real nats-server
// with JetStream (started here). Whatever agentcore relies on is checked on both.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startNats, waitFor } from '@agent/testkit';
import { LmdbStore } from './lmdb-store';
import { NatsStore } from './nats';
import type { KvStore, StoreChange } from './store';

interface Backend {
  name: string;
  open(): Promise<KvStore>;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
}

let natsUrl = '';
let stopNats: (() => Promise<void>) | undefined;
const lmdbDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-store-'));

const backends: Backend[] = [
  { name: 'embedded (lmdb)', open: () => LmdbStore.open(lmdbDir), teardown: async () => fs.rmSync(lmdbDir, { recursive: true, force: true }) },
  {
    name: 'cluster (nats-server, JetStream KV)',
    setup: async () => {
      const n = await startNats();
      natsUrl = n.url;
      stopNats = n.stop;
    },
    open: () => NatsStore.open(natsUrl, 'contract'),
    teardown: async () => stopNats?.(),
  },
];

for (const backend of backends) {
  describe(`KvStore contract: ${backend.name}`, () => {
    let store: KvStore;
    before(async () => {
      await backend.setup?.();
      store = await backend.open();
    });
    after(async () => {
      await store.close();
      await backend.teardown?.();
    });

    it('gets what was put, the last put winning, and nothing for an unknown key', async () => {
      await store.put('t1.a', 'one');
      assert.equal(await store.get('t1.a'), 'one');
      await Promise.all([store.put('t1.a', 'two'), store.put('t1.a', 'three')]);
      assert.equal(await store.get('t1.a'), 'three');
      assert.equal(await store.get('t1.none'), undefined);
    });

    it('putIf writes only over what it expects (absent, or a value); of writers expecting the same, one wins', async () => {
      assert.equal(await store.putIf('t1b.a', 'r1', undefined), true, 'absent, as expected');
      assert.equal(await store.putIf('t1b.a', 'rX', undefined), false, 'no longer absent');
      assert.equal(await store.putIf('t1b.a', 'r2', 'r1'), true);
      assert.equal(await store.putIf('t1b.a', 'rY', 'r1'), false, 'r1 is gone');
      assert.equal(await store.get('t1b.a'), 'r2');
      // Two writers at once, both expecting r2 (on NATS two stores, as two agents; the embedded one has one per data dir): one write goes in.
      const other = backend.name.startsWith('cluster') ? await backend.open() : store;
      try {
        const won = await Promise.all([store.putIf('t1b.a', 'from-1', 'r2'), other.putIf('t1b.a', 'from-2', 'r2')]);
        assert.equal(won.filter(Boolean).length, 1, JSON.stringify(won));
        assert.equal(await store.get('t1b.a'), won[0] ? 'from-1' : 'from-2');
      } finally {
        if (other !== store) await other.close();
      }
      await store.delete('t1b.a');
      assert.equal(await store.putIf('t1b.a', 'again', undefined), true, 'deleted counts as absent');
    });

    it('keeps large and non-ASCII values whole', async () => {
      const big = JSON.stringify({ env: ['Ünïcødé=✓'], blob: 'x'.repeat(200_000) });
      await store.put('t2.big', big);
      assert.equal(await store.get('t2.big'), big);
    });

    it('deletes, and a delete of a missing key is no error', async () => {
      await store.put('t3.a', 'v');
      await store.delete('t3.a');
      assert.equal(await store.get('t3.a'), undefined);
      await store.delete('t3.never');
    });

    it('applies puts and deletes of several keys in one call, in order, each told to watchers', async () => {
      await store.put('t9.gone', 'old');
      const seen: StoreChange[] = [];
      const stop = store.watch('t9.', (c) => seen.push(c));
      await waitFor('current value', async () => (seen.length >= 1 ? true : undefined), 5_000, 20);
      await store.apply([
        { key: 't9.a', value: '1' },
        { key: 't9.gone', value: undefined },
        { key: 't9.a', value: '2' },
        { key: 't9.b', value: 'b' },
      ]);
      assert.deepEqual(await store.list('t9.'), [['t9.a', '2'], ['t9.b', 'b']]);
      await waitFor('changes', async () => (seen.length >= 5 ? true : undefined), 5_000, 20);
      stop();
      assert.deepEqual(seen.slice(1), [
        { key: 't9.a', value: '1' },
        { key: 't9.gone', value: undefined },
        { key: 't9.a', value: '2' },
        { key: 't9.b', value: 'b' },
      ]);
    });

    it('lists exactly the keys under a prefix, in key order', async () => {
      for (const k of ['t4.h1.b', 't4.h1.a', 't4.h10.a', 't4.h1x', 't4.h2.a']) await store.put(k, k);
      assert.deepEqual(await store.list('t4.h1.'), [['t4.h1.a', 't4.h1.a'], ['t4.h1.b', 't4.h1.b']]);
      assert.deepEqual((await store.list('t4.')).map(([k]) => k), ['t4.h1.a', 't4.h1.b', 't4.h10.a', 't4.h1x', 't4.h2.a']);
      assert.deepEqual(await store.list('t4.none.'), []);
    });

    it('watches a prefix: current values first, then puts and deletes, until unsubscribed', async () => {
      await store.put('t5.a', '1');
      const seen: StoreChange[] = [];
      const stop = store.watch('t5.', (c) => seen.push(c));
      await waitFor('current value', async () => (seen.length >= 1 ? true : undefined), 5_000, 20);
      assert.deepEqual(seen[0], { key: 't5.a', value: '1' });
      await store.put('t5.b', '2');
      await store.delete('t5.a');
      await store.put('t6.other', 'x');
      await waitFor('changes', async () => (seen.length >= 3 ? true : undefined), 5_000, 20);
      assert.deepEqual(seen.slice(1), [
        { key: 't5.b', value: '2' },
        { key: 't5.a', value: undefined },
      ]);
      stop();
      await new Promise((r) => setTimeout(r, 100));
      await store.put('t5.c', '3');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(seen.length, 3, 'nothing after unsubscribe');
    });

    it('watches one key', async () => {
      const seen: StoreChange[] = [];
      const stop = store.watch('t7.k', (c) => seen.push(c));
      await new Promise((r) => setTimeout(r, 100));
      await store.put('t7.kk', 'not this one');
      await store.put('t7.k', 'v');
      await waitFor('change', async () => (seen.length >= 1 ? true : undefined), 5_000, 20);
      stop();
      assert.deepEqual(seen, [{ key: 't7.k', value: 'v' }]);
    });

    it('keeps what was put across a close and an open', async () => {
      await store.put('t8.a', 'kept');
      await store.close();
      store = await backend.open();
      assert.equal(await store.get('t8.a'), 'kept');
      await store.ping();
    });
  });
}
