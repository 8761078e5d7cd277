// DockerRecord's order of work on a real cgroup: what it sends Docker is the
// test's own writer (a function that answers when the test says), so the
// coalescing, the retries and the revert are seen call by call. The driver
// against a real Docker is e2e/src/docker-record.test.ts.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CgroupFs } from './cgroup-fs';
import { DockerRecord } from './docker-record';
import type { CgroupRef, Resources } from './types';
import { removeCgroupParent } from '@agent/testkit';

const MiB = 1024 * 1024;
const root = `agent-rec-${randomBytes(3).toString('hex')}`;
const cg = new CgroupFs(root);
const skip = process.getuid?.() !== 0 || !cg.available() ? 'needs root and a cgroup hierarchy' : false;

interface Call {
  readonly body: Readonly<Record<string, unknown>>;
  answer(err?: unknown): void;
}

/** A writer that holds each call until the test answers it. */
function heldWriter(): { write: (id: string, body: Readonly<Record<string, unknown>>) => Promise<void>; calls: Call[]; next(): Promise<Call> } {
  const calls: Call[] = [];
  let waiting: ((c: Call) => void) | undefined;
  return {
    calls,
    write: (_id, body) =>
      new Promise<void>((resolve, reject) => {
        const c = { body: { ...body }, answer: (err?: unknown) => (err ? reject(err) : resolve()) };
        calls.push(c);
        waiting?.(c);
        waiting = undefined;
      }),
    next: () => new Promise<Call>((r) => (waiting = r)),
  };
}

const memory = (ref: CgroupRef): number => cg.readLimits(ref).memoryBytes;

describe('DockerRecord (real cgroup, the test answers for Docker)', { skip }, () => {
  let ref: CgroupRef;
  before(() => {
    ref = cg.create('g');
  });
  after(() => {
    cg.remove(ref);
    // remove() stops below the CgroupFs's own parent: the test's root goes here.
    removeCgroupParent(root);
  });

  /** The driver's part: the cgroup first, then the record follows. */
  const change = (rec: DockerRecord, bytes: number): void => {
    const before = cg.readLimits(ref);
    cg.applyLimits(ref, { memoryBytes: bytes });
    rec.follow('c1', ref, { memoryBytes: bytes }, { memoryBytes: before.memoryBytes }, { Memory: bytes, MemorySwap: bytes });
  };

  it('coalesces: what comes while Docker is being told goes in one next call, the last value winning', async () => {
    const w = heldWriter();
    const rec = new DockerRecord(cg, w.write, () => assert.fail('nothing refused'));
    const first = w.next();
    change(rec, 64 * MiB);
    const c1 = await first;
    for (let i = 1; i <= 5; i++) change(rec, (64 + i) * MiB);
    assert.equal(rec.behind('c1'), true);
    const second = w.next();
    c1.answer();
    const c2 = await second;
    assert.deepEqual(c2.body, { Memory: 69 * MiB, MemorySwap: 69 * MiB });
    c2.answer();
    await rec.flush('c1');
    assert.equal(w.calls.length, 2, 'six changes, two calls');
    assert.equal(rec.behind('c1'), false);
    assert.equal(memory(ref), 69 * MiB);
  });

  it("a change made while Docker writes an older one is back in the cgroup as soon as Docker's write is done", async () => {
    const w = heldWriter();
    const rec = new DockerRecord(cg, w.write, () => assert.fail('nothing refused'));
    const first = w.next();
    change(rec, 64 * MiB);
    const c1 = await first;
    change(rec, 100 * MiB);
    // Docker's update writes the running container's cgroup with what it was sent, as dockerd does.
    cg.applyLimits(ref, { memoryBytes: c1.body.Memory as number });
    const second = w.next();
    c1.answer();
    await new Promise((r) => setImmediate(r));
    assert.equal(memory(ref), 100 * MiB, 'the newer value is back before the next call');
    (await second).answer();
    await rec.flush('c1');
    assert.equal(memory(ref), 100 * MiB);
  });

  it('idle() waits while a call is with Docker, and no longer than its timeout', async () => {
    const w = heldWriter();
    const rec = new DockerRecord(cg, w.write, () => assert.fail('nothing refused'));
    await rec.idle('c1'); // nothing under way: at once
    const first = w.next();
    change(rec, 64 * MiB);
    const c1 = await first;
    let idle = false;
    const waiting = rec.idle('c1').then(() => (idle = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(idle, false, 'Docker is still writing');
    c1.answer();
    await waiting;
    const second = w.next();
    change(rec, 65 * MiB);
    const c2 = await second;
    const t0 = Date.now();
    await rec.idle('c1', 50);
    assert.ok(Date.now() - t0 >= 45, 'a Docker that does not answer holds it back until the timeout');
    c2.answer();
    await rec.flush('c1');
  });

  it('a refusal takes the cgroup back to before the refused change, and says what it holds', async () => {
    const w = heldWriter();
    const refused: Array<{ err: unknown; applied: Resources }> = [];
    const rec = new DockerRecord(cg, w.write, (_id, err, applied) => refused.push({ err, applied }));
    cg.applyLimits(ref, { memoryBytes: 64 * MiB });
    const first = w.next();
    change(rec, 96 * MiB);
    assert.equal(memory(ref), 96 * MiB, 'the cgroup holds it at once');
    (await first).answer(Object.assign(new Error('conflict'), { statusCode: 409 }));
    await rec.flush('c1');
    assert.equal(memory(ref), 64 * MiB);
    assert.equal(refused.length, 1);
    assert.equal(refused[0]!.applied.memoryBytes, 64 * MiB);
  });

  it('a refusal with a later change queued: that one is still sent, and its value is back in the cgroup once Docker takes it', async () => {
    const w = heldWriter();
    const refused: unknown[] = [];
    const rec = new DockerRecord(cg, w.write, (_id, err) => refused.push(err));
    cg.applyLimits(ref, { memoryBytes: 64 * MiB });
    const first = w.next();
    change(rec, 80 * MiB);
    const c1 = await first;
    change(rec, 90 * MiB);
    const second = w.next();
    c1.answer(Object.assign(new Error('refused'), { statusCode: 400 }));
    const c2 = await second;
    assert.equal(memory(ref), 64 * MiB, 'reverted while the next one is sent');
    c2.answer();
    await rec.flush('c1');
    assert.equal(memory(ref), 90 * MiB);
    assert.equal(refused.length, 1);
  });

  it('Docker not answering: the same change is sent again (with what came since) until it answers; nothing is reverted', async () => {
    const w = heldWriter();
    const retries: number[] = [];
    const rec = new DockerRecord(cg, w.write, () => assert.fail('not answering is not refusing'), (_id, _err, delayMs) => retries.push(delayMs));
    const first = w.next();
    change(rec, 72 * MiB);
    const c1 = await first;
    const second = w.next();
    c1.answer(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    change(rec, 74 * MiB);
    const c2 = await second;
    assert.deepEqual(c2.body, { Memory: 74 * MiB, MemorySwap: 74 * MiB });
    c2.answer();
    await rec.flush('c1');
    assert.deepEqual(retries, [100]);
    assert.equal(memory(ref), 74 * MiB);
  });

  it('close() sends what is still queued before it resolves, and gives up on a Docker that does not answer after its timeout', async () => {
    const w = heldWriter();
    const rec = new DockerRecord(cg, w.write, () => assert.fail('nothing refused'));
    const first = w.next();
    change(rec, 68 * MiB);
    let closed = false;
    const closing = rec.close(1_000).then(() => (closed = true));
    const c1 = await first;
    assert.equal(closed, false, 'close waits for the call');
    c1.answer();
    await closing;
    assert.deepEqual(w.calls.map((c) => c.body.Memory), [68 * MiB]);
    const stuck = new DockerRecord(cg, heldWriter().write, () => undefined);
    change(stuck, 69 * MiB);
    const t0 = Date.now();
    await stuck.close(100);
    assert.ok(Date.now() - t0 < 1_000, 'a stuck Docker holds the exit back only as long as the timeout');
  });

  it('a container gone (404) ends its record quietly; a forgotten one is not sent', async () => {
    const w = heldWriter();
    const rec = new DockerRecord(cg, w.write, () => assert.fail('a gone container is not a refusal'));
    const first = w.next();
    change(rec, 66 * MiB);
    (await first).answer(Object.assign(new Error('no such container'), { statusCode: 404 }));
    await rec.flush('c1');
    assert.equal(memory(ref), 66 * MiB);
    change(rec, 67 * MiB);
    rec.forget('c1');
    await rec.flush('c1');
    assert.equal(w.calls.length, 1);
  });
});
