import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeRecords, droppable, encodeRecord, Kind, toRanges, type GapPayload, type SpoolRecord } from './codec';

export interface SpoolOptions {
  /** The most the segments may hold; beyond it the oldest samples and flows go (changes never do). */
  readonly maxBytes: number;
  /** A segment is closed and a new one begun past this size. Default: maxBytes / 8, at most 8 MiB. */
  readonly segmentBytes?: number;
  /** Appends reach the disk (fdatasync) at most this long after they were made. Default 100. */
  readonly syncMs?: number;
}

export interface SpoolStats {
  /** Bytes in the segments (acknowledged records of the oldest one included until it goes). */
  readonly bytes: number;
  readonly segments: number;
  /** Records not yet acknowledged. */
  readonly backlog: number;
  /** Samples and flows dropped because the spool was full, since it was opened. */
  readonly dropped: number;
  /** Records skipped at open because their checksum failed. */
  readonly corrupt: number;
  /** Bytes cut at open: the tail a kill left half-written, or what followed an unreadable length. */
  readonly cut: number;
}

interface Segment {
  readonly id: number;
  readonly file: string;
  bytes: number;
  /** Droppable records (samples, flows) in it: whether dropping them would free anything. */
  samples: number;
}

/** Where the first record not yet acknowledged is. */
interface Position {
  seg: number;
  offset: number;
}

const SEGMENT = /^(\d{10})\.seg$/;
const ACK_FILE = 'acked';
const READ_CHUNK = 4 * 1024 * 1024;
/** With nothing left to send, the segment being written is closed (and so deleted) past this size. */
const CAUGHT_UP_ROLL = 64 * 1024;

/**
 * Bus Out's durable queue: append-only segment files in a private directory,
 * one checksummed record per report, flow or change, each with the boot id and a
 * seq counting from 1 in every run. The upstream acknowledges by (boot, seq);
 * only acknowledged records are passed and only wholly acknowledged segments
 * deleted. A torn tail is cut and a corrupt record skipped and counted at
 * open: opening never fails on what it finds. Bounded: past maxBytes the
 * oldest samples and flows are dropped, counted, and a gap record per boot
 * says which.
 * One owner: the reporter.
 */
export class Spool {
  readonly boot = randomUUID();
  private seq = 0;
  private readonly segments: Segment[] = [];
  private fd: number;
  private pos: Position;
  private unacked = 0;
  private dropped = 0;
  private corrupt = 0;
  private cut = 0;
  /** What the last peek returned, with where each record ends: what ack advances over. */
  private peeked: Array<{ record: SpoolRecord; seg: number; end: number }> = [];
  private syncTimer: NodeJS.Timeout | undefined;
  private readonly segmentBytes: number;
  private readonly syncMs: number;

  constructor(
    private readonly dir: string,
    private readonly opts: SpoolOptions,
  ) {
    if (!(opts.maxBytes > 0)) throw new RangeError('spool maxBytes must be positive');
    this.segmentBytes = opts.segmentBytes ?? Math.min(8 * 1024 * 1024, Math.max(64 * 1024, Math.floor(opts.maxBytes / 8)));
    this.syncMs = opts.syncMs ?? 100;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    const boundaries = new Map<number, Set<number>>();
    const names = fs.readdirSync(dir).filter((n) => SEGMENT.test(n)).sort();
    for (const name of names) {
      const seg: Segment = { id: Number(SEGMENT.exec(name)![1]), file: path.join(dir, name), bytes: 0, samples: 0 };
      boundaries.set(seg.id, this.scan(seg));
      this.segments.push(seg);
    }
    this.pos = this.loadPosition(boundaries);
    this.release();
    // What the scan found past the position is the backlog: the segments are not read twice.
    for (const seg of this.segments) {
      const from = seg.id === this.pos.seg ? this.pos.offset : 0;
      for (const end of boundaries.get(seg.id) ?? []) if (end > from) this.unacked++;
    }
    if (this.segments.length === 0) this.segments.push(this.newSegment(1));
    this.fd = fs.openSync(this.active.file, 'a', 0o600);
  }

  /** Appends records; they are on disk (page cache) when it returns, synced within syncMs. Throws what the disk says. */
  append(items: ReadonlyArray<{ kind: Kind.Sample | Kind.Change | Kind.Flow; payload: Buffer }>): SpoolRecord[] {
    if (items.length === 0) return [];
    const records = items.map((i, k): SpoolRecord => ({ kind: i.kind, boot: this.boot, seq: this.seq + 1 + k, payload: i.payload }));
    const bytes = Buffer.concat(records.map(encodeRecord));
    if (this.active.bytes > 0 && this.active.bytes + bytes.length > this.segmentBytes) this.roll();
    const seg = this.active;
    try {
      writeAll(this.fd, bytes);
    } catch (err) {
      // Nothing half-written may stay in front of later records.
      fs.ftruncateSync(this.fd, seg.bytes);
      throw err;
    }
    this.seq += records.length;
    seg.bytes += bytes.length;
    seg.samples += records.filter((r) => droppable(r.kind)).length;
    this.unacked += records.length;
    this.syncTimer ??= setTimeout(() => this.sync(), this.syncMs);
    this.bound();
    return records;
  }

  /** Up to max records not yet acknowledged, oldest first. */
  peek(max: number): SpoolRecord[] {
    this.peeked = [];
    for (const seg of this.segments) {
      if (this.peeked.length >= max) break;
      if (seg.id < this.pos.seg) continue;
      let offset = seg.id === this.pos.seg ? this.pos.offset : 0;
      while (offset < seg.bytes && this.peeked.length < max) {
        const buf = readAt(seg.file, offset, Math.min(READ_CHUNK, seg.bytes - offset));
        const res = decodeRecords(buf, max - this.peeked.length);
        for (const d of res.records) this.peeked.push({ record: d.record, seg: seg.id, end: offset + d.end });
        if (res.stop === 0) {
          // One record larger than the chunk: read it whole.
          const whole = decodeRecords(readAt(seg.file, offset, seg.bytes - offset), 1);
          const d = whole.records[0];
          if (!d) break;
          this.peeked.push({ record: d.record, seg: seg.id, end: offset + d.end });
          offset += d.end;
          continue;
        }
        offset += res.stop;
      }
    }
    return this.peeked.map((p) => p.record);
  }

  /**
   * The upstream has stored, per boot, every seq up to this one: the peeked
   * records it covers, in order, are passed; segments wholly behind go.
   * Returns how many records were passed.
   */
  ack(acked: ReadonlyMap<string, number>): number {
    let n = 0;
    for (const p of this.peeked) {
      if ((acked.get(p.record.boot) ?? 0) < p.record.seq) break;
      this.pos = { seg: p.seg, offset: p.end };
      n++;
    }
    if (n === 0) return 0;
    this.peeked = this.peeked.slice(n);
    this.unacked -= n;
    // All caught up: the segment being written goes too once it is of some size, so the spool shrinks back.
    if (this.pos.seg === this.active.id && this.pos.offset === this.active.bytes && this.active.bytes >= Math.min(this.segmentBytes, CAUGHT_UP_ROLL)) this.roll();
    this.release();
    this.savePosition();
    return n;
  }

  stats(): SpoolStats {
    return { bytes: this.totalBytes(), segments: this.segments.length, backlog: this.unacked, dropped: this.dropped, corrupt: this.corrupt, cut: this.cut };
  }

  close(): void {
    this.sync();
    fs.closeSync(this.fd);
    this.savePosition();
  }

  // ---- inside

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  private sync(): void {
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    try {
      fs.fdatasyncSync(this.fd);
    } catch {
      /* the next append reports the disk's trouble */
    }
  }

  private newSegment(id: number): Segment {
    const seg: Segment = { id, file: path.join(this.dir, `${String(id).padStart(10, '0')}.seg`), bytes: 0, samples: 0 };
    fs.closeSync(fs.openSync(seg.file, 'a', 0o600));
    return seg;
  }

  private roll(): void {
    this.sync();
    fs.closeSync(this.fd);
    this.segments.push(this.newSegment(this.active.id + 1));
    this.fd = fs.openSync(this.active.file, 'a', 0o600);
  }

  /**
   * Reads a segment at open: counts its samples and corrupt records, cuts
   * what cannot be read from where it stops. Returns its record boundaries.
   */
  private scan(seg: Segment): Set<number> {
    let buf: Buffer;
    try {
      buf = fs.readFileSync(seg.file);
    } catch {
      buf = Buffer.alloc(0);
    }
    const res = decodeRecords(buf);
    this.corrupt += res.corrupt;
    if (res.broken) {
      this.cut += buf.length - res.stop;
      fs.truncateSync(seg.file, res.stop);
    }
    seg.bytes = res.stop;
    seg.samples = res.records.filter((d) => droppable(d.record.kind)).length;
    return new Set([0, ...res.records.map((d) => d.end)]);
  }

  /** The acknowledged position, if it still names a record boundary; else the start. */
  private loadPosition(boundaries: Map<number, Set<number>>): Position {
    const first: Position = { seg: this.segments[0]?.id ?? 1, offset: 0 };
    try {
      const saved = JSON.parse(fs.readFileSync(path.join(this.dir, ACK_FILE), 'utf8')) as Position;
      if (boundaries.get(saved.seg)?.has(saved.offset)) return { seg: saved.seg, offset: saved.offset };
      // Its segment is gone (wholly acknowledged) but later ones are there: they start unacknowledged.
      const later = this.segments.find((s) => s.id > saved.seg);
      if (later && !boundaries.has(saved.seg)) return { seg: later.id, offset: 0 };
    } catch {
      /* none yet, or unreadable: everything is unacknowledged (the upstream drops what it has) */
    }
    return first;
  }

  private savePosition(): void {
    const file = path.join(this.dir, ACK_FILE);
    const tmp = `${file}.tmp`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(this.pos), { mode: 0o600 });
      fs.renameSync(tmp, file);
    } catch {
      /* lost: the records after the last saved position are sent again, and dropped upstream */
    }
  }

  /** Segments wholly acknowledged go; the one being written stays. */
  private release(): void {
    while (this.segments.length > 1) {
      const first = this.segments[0]!;
      if (first.id === this.pos.seg && this.pos.offset < first.bytes) break;
      if (first.id > this.pos.seg) break;
      if (first.id === this.pos.seg) this.pos = { seg: this.segments[1]!.id, offset: 0 };
      fs.rmSync(first.file, { force: true });
      this.segments.shift();
    }
  }

  private totalBytes(): number {
    return this.segments.reduce((n, s) => n + s.bytes, 0);
  }

  /** Over the bound: the oldest segment with samples (or flows) loses them, for a gap record per boot. */
  private bound(): void {
    while (this.totalBytes() > this.opts.maxBytes) {
      let victim = this.segments.find((s) => s !== this.active && s.samples > 0);
      if (!victim && this.active.samples > 0 && this.active.bytes > 0) {
        this.roll();
        victim = this.segments[this.segments.length - 2];
      }
      if (!victim) return; // only changes left: they are never dropped for the bound
      this.dropSamples(victim);
    }
  }

  private dropSamples(seg: Segment): void {
    const from = seg.id === this.pos.seg ? this.pos.offset : 0;
    const buf = readAt(seg.file, from, seg.bytes - from);
    const { records } = decodeRecords(buf);
    const dropped = new Map<string, number[]>();
    const kept: Buffer[] = [];
    for (const d of records) {
      if (droppable(d.record.kind)) {
        let seqs = dropped.get(d.record.boot);
        if (!seqs) dropped.set(d.record.boot, (seqs = []));
        seqs.push(d.record.seq);
      } else {
        kept.push(buf.subarray(d.start, d.end));
      }
    }
    // The gap goes first: the upstream learns which seqs will never come before what follows them.
    const gaps = [...dropped].map(([boot, seqs]) => {
      seqs.sort((a, b) => a - b);
      const payload: GapPayload = { ranges: toRanges(seqs), count: seqs.length };
      return encodeRecord({ kind: Kind.Gap, boot, seq: seqs[seqs.length - 1]!, payload: Buffer.from(JSON.stringify(payload)) });
    });
    const content = Buffer.concat([...gaps, ...kept]);
    const tmp = `${seg.file}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      writeAll(fd, content);
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, seg.file);
    const count = [...dropped.values()].reduce((n, s) => n + s.length, 0);
    seg.bytes = content.length;
    seg.samples = 0;
    if (seg.id === this.pos.seg) this.pos = { seg: seg.id, offset: 0 };
    this.unacked += gaps.length - count;
    this.dropped += count;
    this.peeked = []; // offsets moved: the next peek starts again from the position
    this.savePosition();
  }
}

function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length; ) off += fs.writeSync(fd, buf, off, buf.length - off);
}

function readAt(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = fs.readSync(fd, buf, got, length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}
