// One spool record on disk:
//   u32 length of the body | u32 CRC-32 of the body | body
//   body = u8 kind | u8 boot id length | boot id | u64 seq | payload
// all little-endian. A record whose checksum fails is skipped and counted; a
// record cut short (the last write of a killed process) ends the segment.
import { crc32 } from 'node:zlib';

export enum Kind {
  /** A report: may be dropped (oldest first) when the spool is full. */
  Sample = 1,
  /** An object change: never dropped for samples. */
  Change = 2,
  /** Which samples and flows were dropped: payload is JSON {ranges: [[from, to], ...], count}. */
  Gap = 3,
  /** A network flow: dropped under pressure exactly like a sample. */
  Flow = 4,
}

/** The kinds the bound may drop (with a gap record): samples and flows, never changes. */
export function droppable(kind: Kind): boolean {
  return kind === Kind.Sample || kind === Kind.Flow;
}

export interface SpoolRecord {
  readonly kind: Kind;
  /** The agent run that wrote it: seq counts from 1 in each. */
  readonly boot: string;
  readonly seq: number;
  readonly payload: Buffer;
}

const HEADER = 8;
const FIXED_BODY = 1 + 1 + 8;
/** No record is larger: a length beyond it is damage, not data. */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;

export function encodeRecord(r: SpoolRecord): Buffer {
  const boot = Buffer.from(r.boot, 'utf8');
  if (boot.length > 255) throw new RangeError('boot id longer than 255 bytes');
  const body = Buffer.allocUnsafe(FIXED_BODY + boot.length + r.payload.length);
  body.writeUInt8(r.kind, 0);
  body.writeUInt8(boot.length, 1);
  boot.copy(body, 2);
  body.writeBigUInt64LE(BigInt(r.seq), 2 + boot.length);
  r.payload.copy(body, FIXED_BODY + boot.length);
  const head = Buffer.allocUnsafe(HEADER);
  head.writeUInt32LE(body.length, 0);
  head.writeUInt32LE(crc32(body), 4);
  return Buffer.concat([head, body]);
}

export interface Decoded {
  readonly record: SpoolRecord;
  /** Where the record starts, and where the next one does, relative to the buffer. */
  readonly start: number;
  readonly end: number;
}

export interface DecodeResult {
  readonly records: Decoded[];
  /** Records skipped because their checksum failed. */
  readonly corrupt: number;
  /** Where decoding stopped: the buffer's length, or the start of a record cut short or unreadable. */
  readonly stop: number;
  /** Decoding stopped before the end: at a record cut short, or a length that cannot be. */
  readonly broken: boolean;
}

/** Every record in buf, from its start; max bounds how many are returned (the rest is not read). */
export function decodeRecords(buf: Buffer, max = Infinity): DecodeResult {
  const records: Decoded[] = [];
  let corrupt = 0;
  let pos = 0;
  while (pos < buf.length && records.length < max) {
    if (buf.length - pos < HEADER) return { records, corrupt, stop: pos, broken: true };
    const len = buf.readUInt32LE(pos);
    if (len < FIXED_BODY || len > MAX_RECORD_BYTES) return { records, corrupt, stop: pos, broken: true };
    const end = pos + HEADER + len;
    if (end > buf.length) return { records, corrupt, stop: pos, broken: true };
    const body = buf.subarray(pos + HEADER, end);
    const bootLen = body.readUInt8(1);
    if (crc32(body) !== buf.readUInt32LE(pos + 4) || FIXED_BODY + bootLen > len) {
      corrupt++;
      pos = end;
      continue;
    }
    records.push({
      record: {
        kind: body.readUInt8(0) as Kind,
        boot: body.toString('utf8', 2, 2 + bootLen),
        seq: Number(body.readBigUInt64LE(2 + bootLen)),
        payload: Buffer.from(body.subarray(FIXED_BODY + bootLen)),
      },
      start: pos,
      end,
    });
    pos = end;
  }
  return { records, corrupt, stop: pos, broken: false };
}

/** The seqs dropped from one boot, as ranges. */
export interface GapPayload {
  readonly ranges: Array<[number, number]>;
  readonly count: number;
}

/** Sorted seqs -> [from, to] ranges. */
export function toRanges(seqs: readonly number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const s of seqs) {
    const last = out[out.length - 1];
    if (last && s === last[1] + 1) last[1] = s;
    else out.push([s, s]);
  }
  return out;
}
