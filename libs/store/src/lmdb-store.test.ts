// The embedded database on real file systems: private files, the old format
// migrated once, and a disk that fills up or turns read-only (a small tmpfs
// mounted here).
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fillDisk, mountTmpfs, scratchDir, type Tmpfs } from '@agent/testkit';
import { DiskRoom } from './disk-room';
import { FileStore } from './file-store';
import { LmdbStore } from './lmdb-store';
import { StoreWriteError } from './store';

const unhandled: unknown[] = [];
process.on('unhandledRejection', (e) => unhandled.push(e));

/** A directory of this test process, removed when it exits. */
const tmp = (): string => scratchDir('agent-lmdb-');

describe('embedded store files', () => {
  it('are the agent\'s alone: a 0700 directory of 0600 files, whatever the umask', async () => {
    const dir = path.join(tmp(), 'state');
    const old = process.umask(0o022);
    try {
      const store = await LmdbStore.open(dir);
      await store.put('a.b', 'secret');
      await store.close();
    } finally {
      process.umask(old);
    }
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    const files = fs.readdirSync(dir);
    assert.ok(files.length >= 1);
    for (const f of files) assert.equal(fs.statSync(path.join(dir, f)).mode & 0o777, 0o600, f);
  });
});

describe('migration from the one-file-per-key format', () => {
  it('moves every record in once, removes the old directory, and keeps a newer record over an old one', async () => {
    const root = tmp();
    const oldDir = path.join(root, 'store');
    const old = new FileStore(oldDir);
    await old.put('workloads.h.obj-1', '{"object":1}');
    await old.put('workloads.h.obj-2', '{"object":2}');
    await old.put('hosts.h', '{}');
    fs.writeFileSync(path.join(oldDir, 'workloads.h.obj-3.json'), '{"trunc'); // damaged: moved as it is, agentcore names it
    // An earlier migration committed obj-2 and the agent changed it, then the old directory came back (a kill before its removal).
    const first = await LmdbStore.open(path.join(root, 'state'));
    await first.put('workloads.h.obj-2', '{"object":"newer"}');
    await first.close();

    const store = await LmdbStore.open(path.join(root, 'state'), { migrateFrom: oldDir });
    assert.equal(store.migrated, 4);
    assert.equal(fs.existsSync(oldDir), false, 'old directory removed');
    assert.deepEqual(await store.list('workloads.h.'), [
      ['workloads.h.obj-1', '{"object":1}'],
      ['workloads.h.obj-2', '{"object":"newer"}'],
      ['workloads.h.obj-3', '{"trunc'],
    ]);
    assert.equal(await store.get('hosts.h'), '{}');
    await store.close();
    const again = await LmdbStore.open(path.join(root, 'state'), { migrateFrom: oldDir });
    assert.equal(again.migrated, 0);
    await again.close();
  });
});

describe('a disk that fills up or turns read-only (tmpfs)', () => {
  let disk: Tmpfs;
  before(() => (disk = mountTmpfs('16m')));
  after(() => disk.unmount());

  it('refuses writes with ENOSPC before the database meets the full disk, keeps reads and deletes, writes again once space is freed, keeps every acknowledged record', async () => {
    const dir = path.join(disk.dir, 'state');
    let store = await LmdbStore.open(dir);
    await store.put('workloads.h.first', 'x'.repeat(1000));
    const acknowledged = new Map<string, string>([['workloads.h.first', 'x'.repeat(1000)]]);
    // Something else takes the rest of the disk.
    const filler = path.join(disk.dir, 'filler');
    fillDisk(filler);
    let refused: unknown;
    for (let i = 0; i < 1000 && refused === undefined; i++) {
      const key = `workloads.h.obj-${i}`;
      const value = JSON.stringify({ i, pad: 'x'.repeat(20_000) });
      await store.put(key, value).then(
        () => acknowledged.set(key, value),
        (e: unknown) => (refused = e),
      );
    }
    assert.ok(refused instanceof StoreWriteError, `a write was refused: ${String(refused)}`);
    assert.equal(refused.code, 'ENOSPC');
    assert.equal(refused.exhausted, true);
    assert.match(refused.message, /no space left on device/);
    await assert.rejects(store.ping(), (e: unknown) => e instanceof StoreWriteError && e.code === 'ENOSPC');
    assert.equal(await store.get('workloads.h.first'), acknowledged.get('workloads.h.first'), 'reads keep working');
    assert.equal((await store.list('workloads.h.')).length, acknowledged.size);
    // Several keys in one write: all refused, none half-written.
    await assert.rejects(
      store.apply([
        { key: 'workloads.h.small', value: 's' },
        { key: 'events.h.big', value: 'x'.repeat(50_000) },
      ]),
      (e: unknown) => e instanceof StoreWriteError && e.code === 'ENOSPC',
    );
    assert.equal(await store.get('workloads.h.small'), undefined, 'no part of a refused apply is written');
    await store.delete('workloads.h.first');
    acknowledged.delete('workloads.h.first');

    fs.rmSync(filler);
    await store.ping();
    await store.put('workloads.h.after', 'fits');
    acknowledged.set('workloads.h.after', 'fits');
    await store.close();

    store = await LmdbStore.open(dir);
    assert.deepEqual(new Map(await store.list('workloads.h.')), acknowledged, 'every acknowledged record, and only those, after a reopen');
    await store.close();
    assert.deepEqual(unhandled, [], 'no promise left unhandled by the database');
  });

  it('applies several keys as one transaction: a bad key in it writes none of them', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-store-apply-'));
    const store = await LmdbStore.open(dir);
    try {
      await assert.rejects(store.apply([{ key: 'workloads.h.ok', value: 'v' }, { key: 'bad key/..', value: 'v' }]), /bad store key/);
      assert.equal(await store.get('workloads.h.ok'), undefined);
      await store.apply([{ key: 'workloads.h.ok', value: 'v' }, { key: 'events.h.e', value: 'e' }]);
      assert.deepEqual([await store.get('workloads.h.ok'), await store.get('events.h.e')], ['v', 'e']);
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses writes with EROFS on a read-only mount, before the database sees them', async () => {
    // A file system turning read-only under open files cannot be staged on tmpfs (remount ro is refused
    // while files are open for writing): the claim is checked against a read-only bind mount instead.
    const dir = path.join(disk.dir, 'rw');
    const store = await LmdbStore.open(dir);
    await store.put('a.b', 'v');
    await store.close();
    const ro = path.join(disk.dir, 'ro');
    fs.mkdirSync(ro);
    execFileSync('mount', ['--bind', dir, ro]);
    try {
      execFileSync('mount', ['-o', 'remount,bind,ro', ro]);
      assert.throws(() => new DiskRoom(path.join(ro, 'agent.mdb'), ro).claim(10, 'put'), (e: unknown) => e instanceof StoreWriteError && e.code === 'EROFS' && !e.exhausted && /read-only file system/.test(e.message));
    } finally {
      execFileSync('umount', [ro]);
    }
    assert.deepEqual(unhandled, []);
  });
});
