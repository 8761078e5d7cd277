// The spool on a real file system: order, acknowledgement, reopening after a
// kill (torn tail, corrupt record), the bound (samples and flows dropped,
// changes kept, gap records exact), private files, and a full disk (tmpfs).
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fillDisk, mountTmpfs } from '@agent/testkit';
import { Kind, type GapPayload, type SpoolRecord } from './codec';
import { Spool } from './spool';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-spool-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => path.join(root, `s${++n}`);

const sample = (i: number): { kind: Kind.Sample; payload: Buffer } => ({ kind: Kind.Sample, payload: Buffer.from(`sample-${i}-${'x'.repeat(100)}`) });
const change = (i: number): { kind: Kind.Change; payload: Buffer } => ({ kind: Kind.Change, payload: Buffer.from(`change-${i}`) });
const flow = (i: number): { kind: Kind.Flow; payload: Buffer } => ({ kind: Kind.Flow, payload: Buffer.from(`flow-${i}-${'y'.repeat(100)}`) });

/** Everything not yet acknowledged, acknowledging nothing. */
function all(s: Spool): SpoolRecord[] {
  return s.peek(1_000_000);
}

/** Acknowledges what peek returns, as an upstream that stored it all would. */
function ackAll(s: Spool): number {
  const recs = all(s);
  const top = new Map<string, number>();
  for (const r of recs) top.set(r.boot, Math.max(top.get(r.boot) ?? 0, r.seq));
  return s.ack(top);
}

const segments = (dir: string): string[] => fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();

describe('spool', () => {
  it('keeps records in order with seq from 1, across segments; acknowledged segments go', () => {
    const dir = freshDir();
    const s = new Spool(dir, { maxBytes: 10 * 1024 * 1024, segmentBytes: 4096 });
    for (let i = 0; i < 200; i++) s.append([i % 10 === 0 ? change(i) : sample(i)]);
    assert.ok(segments(dir).length > 3, `${segments(dir).length} segments`);
    const recs = all(s);
    assert.deepEqual(recs.map((r) => r.seq), Array.from({ length: 200 }, (_, i) => i + 1));
    assert.equal(recs[10]!.kind, Kind.Change);
    assert.equal(recs[11]!.payload.toString().split('-')[1], '11');
    // The upstream stored up to seq 150: those are passed; segments wholly before go.
    s.peek(1_000_000);
    assert.equal(s.ack(new Map([[s.boot, 150]])), 150);
    assert.deepEqual(all(s).map((r) => r.seq), Array.from({ length: 50 }, (_, i) => i + 151));
    assert.equal(s.stats().backlog, 50);
    const left = segments(dir).length;
    assert.equal(ackAll(s), 50);
    assert.equal(segments(dir).length, 1, `from ${left} to the one being written`);
    assert.ok(s.stats().bytes < 4096, 'caught up: at most one small segment is left');
    assert.equal(s.stats().backlog, 0);
    s.close();
  });

  it('after a reopen (a restart) the unacknowledged records come first, under their boot; the new boot counts from 1', () => {
    const dir = freshDir();
    const a = new Spool(dir, { maxBytes: 1 << 20, segmentBytes: 2048 });
    a.append(Array.from({ length: 40 }, (_, i) => sample(i)));
    a.peek(25);
    a.ack(new Map([[a.boot, 25]]));
    // No close: a SIGKILL. The acknowledged position was saved by ack.
    const b = new Spool(dir, { maxBytes: 1 << 20, segmentBytes: 2048 });
    assert.notEqual(b.boot, a.boot);
    b.append([change(0)]);
    const recs = all(b);
    assert.deepEqual(recs.map((r) => [r.boot === a.boot ? 'a' : 'b', r.seq]), [...Array.from({ length: 15 }, (_, i) => ['a', i + 26]), ['b', 1]]);
    assert.equal(b.stats().backlog, 16);
    b.close();
  });

  it('a torn tail (a kill in the middle of a write) is cut; a corrupt record is skipped and counted; opening never fails', () => {
    const dir = freshDir();
    const a = new Spool(dir, { maxBytes: 1 << 20 });
    a.append(Array.from({ length: 5 }, (_, i) => sample(i)));
    a.close();
    const file = path.join(dir, segments(dir)[0]!);
    // Damage the third record's payload, then leave half a record at the end.
    const buf = fs.readFileSync(file);
    const recLen = buf.length / 5;
    const at = 2 * recLen + 40;
    buf.writeUInt8(buf.readUInt8(at) ^ 0xff, at);
    fs.writeFileSync(file, Buffer.concat([buf, Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 5, 6])]));
    const b = new Spool(dir, { maxBytes: 1 << 20 });
    assert.equal(b.stats().corrupt, 1);
    assert.equal(b.stats().cut, 10);
    b.append([change(9)]);
    assert.deepEqual(all(b).map((r) => r.seq), [1, 2, 4, 5, 1], 'the damaged record is skipped, the new one follows the cut');
    b.close();
    // Garbage for a length: what follows cannot be read, and is cut.
    fs.writeFileSync(path.join(dir, '0000000099.seg'), Buffer.from('not a spool record at all'));
    const c = new Spool(dir, { maxBytes: 1 << 20 });
    assert.ok(c.stats().cut > 0);
    c.close();
  });

  it('over its bound, drops the oldest samples only, counts them, and says which in gap records', () => {
    const dir = freshDir();
    const max = 64 * 1024;
    const s = new Spool(dir, { maxBytes: max, segmentBytes: 8 * 1024 });
    const changes: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const [r] = s.append([i % 50 === 0 ? change(i) : sample(i)]);
      if (r!.kind === Kind.Change) changes.push(r!.seq);
      assert.ok(s.stats().bytes <= max + 8 * 1024, `bytes ${s.stats().bytes} after ${i}`);
    }
    const st = s.stats();
    assert.ok(st.dropped > 2000, `dropped ${st.dropped}`);
    const recs = all(s);
    assert.deepEqual(recs.filter((r) => r.kind === Kind.Change).map((r) => r.seq), changes, 'every change kept, in order');
    const gapped = new Set<number>();
    let counted = 0;
    for (const g of recs.filter((r) => r.kind === Kind.Gap)) {
      const p = JSON.parse(g.payload.toString()) as GapPayload;
      counted += p.count;
      for (const [from, to] of p.ranges) for (let q = from; q <= to; q++) gapped.add(q);
    }
    assert.equal(counted, st.dropped);
    assert.equal(gapped.size, st.dropped);
    // Every seq is accounted for exactly once: delivered, or named by a gap.
    const delivered = recs.filter((r) => r.kind !== Kind.Gap).map((r) => r.seq);
    for (const q of delivered) assert.equal(gapped.has(q), false, `seq ${q} both delivered and dropped`);
    assert.equal(delivered.length + gapped.size, 3000);
    s.close();
  });

  it('drops flows under pressure like samples (named by gap records), never a change; also after a reopen', () => {
    const dir = freshDir();
    const max = 32 * 1024;
    const opts = { maxBytes: max, segmentBytes: 4 * 1024 };
    // Flows and changes only: were flows not droppable, only changes would be left to drop, and nothing would go.
    const a = new Spool(dir, opts);
    const kinds = new Map<string, Map<number, Kind>>();
    const put = (s: Spool, item: { kind: Kind.Flow | Kind.Change; payload: Buffer }): void => {
      const [r] = s.append([item]);
      let m = kinds.get(r!.boot);
      if (!m) kinds.set(r!.boot, (m = new Map()));
      m.set(r!.seq, r!.kind);
      assert.ok(s.stats().bytes <= max + opts.segmentBytes, `bytes ${s.stats().bytes}`);
    };
    for (let i = 0; i < 1000; i++) put(a, i % 25 === 0 ? change(i) : flow(i));
    assert.ok(a.stats().dropped > 500, `dropped ${a.stats().dropped}`);
    const droppedA = a.stats().dropped;
    // No close: a kill. The flows left in the segments are counted again at open, and go first.
    const b = new Spool(dir, opts);
    for (let i = 0; i < 1000; i++) put(b, i % 25 === 0 ? change(i) : flow(i));
    assert.ok(b.stats().dropped > 500, `dropped after reopen ${b.stats().dropped}`);
    const recs = all(b);
    const gapped = new Map<string, Set<number>>();
    let counted = 0;
    for (const g of recs.filter((r) => r.kind === Kind.Gap)) {
      const p = JSON.parse(g.payload.toString()) as GapPayload;
      counted += p.count;
      let set = gapped.get(g.boot);
      if (!set) gapped.set(g.boot, (set = new Set()));
      for (const [from, to] of p.ranges) for (let q = from; q <= to; q++) set.add(q);
    }
    assert.equal(counted, droppedA + b.stats().dropped);
    for (const [boot, m] of kinds) {
      const delivered = new Set(recs.filter((r) => r.boot === boot && r.kind !== Kind.Gap).map((r) => r.seq));
      const gone = gapped.get(boot) ?? new Set<number>();
      for (const [seq, kind] of m) {
        if (kind === Kind.Change) assert.ok(delivered.has(seq) && !gone.has(seq), `change ${boot}/${seq} kept, not in a gap`);
        else assert.ok(delivered.has(seq) !== gone.has(seq), `flow ${boot}/${seq}: delivered or named by a gap, exactly one`);
      }
      assert.ok(gone.size > 0, `flows of boot ${boot === a.boot ? 'a' : 'b'} dropped`);
    }
    // What is delivered is what was appended, in order.
    const flowsLeft = recs.filter((r) => r.kind === Kind.Flow);
    assert.ok(flowsLeft.length > 0);
    for (const r of flowsLeft) assert.match(r.payload.toString(), /^flow-\d+-y+$/);
    b.close();
  });

  it('keeps its files private: directory 0700, segments and position 0600', () => {
    const dir = freshDir();
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.chmodSync(dir, 0o755);
    const s = new Spool(dir, { maxBytes: 1 << 20 });
    s.append([sample(1)]);
    ackAll(s);
    s.close();
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    for (const f of fs.readdirSync(dir)) assert.equal(fs.statSync(path.join(dir, f)).mode & 0o777, 0o600, f);
  });

  it('on a full disk an append throws ENOSPC and leaves nothing half-written (tmpfs)', () => {
    const disk = mountTmpfs('4m');
    try {
      const dir = path.join(disk.dir, 'spool');
      const s = new Spool(dir, { maxBytes: 64 * 1024 * 1024, segmentBytes: 64 * 1024 * 1024 });
      s.append(Array.from({ length: 10 }, (_, i) => sample(i)));
      fillDisk(path.join(disk.dir, 'filler'), 4096);
      const big = Array.from({ length: 100 }, (_, i) => ({ kind: Kind.Sample as const, payload: Buffer.alloc(4096, i) }));
      assert.throws(() => s.append(big), (e: NodeJS.ErrnoException) => e.code === 'ENOSPC');
      fs.rmSync(path.join(disk.dir, 'filler'));
      s.append([change(1)]);
      s.close();
      const again = new Spool(dir, { maxBytes: 64 * 1024 * 1024 });
      assert.equal(again.stats().corrupt, 0);
      assert.equal(again.stats().cut, 0);
      assert.deepEqual(all(again).map((r) => [r.kind, r.seq]), [...Array.from({ length: 10 }, (_, i) => [Kind.Sample, i + 1]), [Kind.Change, 11]]);
      again.close();
    } finally {
      disk.unmount();
    }
  });
});
