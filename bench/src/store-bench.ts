// The embedded store (LmdbStore, one LMDB database) beside the format it
// replaced (FileStore, one file per key), in the same run, on the same disk:
// the start-up load of 100,000 object records, the latency of one awaited put,
// how long a burst of puts blocks the event loop, and the room on disk.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { FileStore, Keys, LmdbStore, type KvStore } from '@agent/store';

/** What main.ts lends a case: its record (agent = LmdbStore here, peer = FileStore or a target) and its helpers. */
export interface StoreBenchKit {
  record(
    e: { case: string; metric: string; unit: string; agent: number; peer: number; peer_name: string; agent_name?: string; note?: string },
    better: 'lower' | 'higher',
  ): void;
  log(s: string): void;
  pct(xs: number[], p: number): number;
  nowMs(): number;
  pool<T, R>(items: readonly T[], n: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]>;
}

const S = {
  records: 100_000,
  /** FileStore is filled with as many records as LmdbStore (every figure is at the same size). */
  fileRecords: 100_000,
  /** As many as the burst: LmdbStore's room ahead grows with the writes in flight (each claims 2 x bytes + 64 KiB). */
  fillInFlight: 64,
  loadReps: 3,
  seqWarm: 200,
  seqPuts: 2_000,
  burstPuts: 5_000,
  burstInFlight: 64,
};
const HOST = 'bench-host';
const round2 = (x: number): number => Math.round(x * 100) / 100;
const FILE_PEER = 'FileStore (one file per key, no fsync)';

/** One object record as the agent keeps it (about 235 bytes of JSON). */
function record(objectId: string, i: number, state = 'STATE_RUNNING', pid = 100_000 + i): string {
  return JSON.stringify({
    object: {
      objectId,
      spec: { name: `w${i}`, kind: 'KIND_PROCESS', process: { command: ['/bin/sleep', '1000'], env: ['A=B'] }, labels: { app: 'x' } },
      state,
    },
    runtime: { pid, cgroup: `/agent/w${i}` },
  });
}

interface Disk {
  /** Sum of st_size of the files in the directory. */
  size: number;
  /** Sum of st_blocks * 512 of the files in the directory. */
  allocated: number;
  files: number;
  /** st_blocks * 512 of the directory itself (its entries). */
  dirAllocated: number;
}
function disk(dir: string): Disk {
  let size = 0;
  let allocated = 0;
  let files = 0;
  for (const f of fs.readdirSync(dir)) {
    const st = fs.statSync(path.join(dir, f));
    if (!st.isFile()) continue;
    size += st.size;
    allocated += st.blocks * 512;
    files++;
  }
  return { size, allocated, files, dirAllocated: fs.statSync(dir).blocks * 512 };
}

/** The agent's start-up: open the store, list its workloads, parse each. */
async function load(open: () => Promise<KvStore>, nowMs: () => number): Promise<{ ms: number; n: number; store: KvStore }> {
  const t0 = nowMs();
  const store = await open();
  const rows = await store.list(Keys.workloads(HOST));
  let n = 0;
  for (const [, v] of rows) if ((JSON.parse(v) as { object?: unknown }).object !== undefined) n++;
  return { ms: nowMs() - t0, n, store };
}

/** Puts one after another (each awaited), ms each. */
async function sequentialPuts(store: KvStore, keys: readonly string[], from: number, n: number, nowMs: () => number): Promise<number[]> {
  const out: number[] = [];
  for (let j = 0; j < n; j++) {
    const i = (from + j * 7919) % keys.length; // spread over the keys
    const v = record(keys[i]!.slice(keys[i]!.lastIndexOf('.') + 1), i, j % 2 === 0 ? 'STATE_STOPPED' : 'STATE_RUNNING', 200_000 + j);
    const t0 = nowMs();
    await store.put(keys[i]!, v);
    out.push(nowMs() - t0);
  }
  return out;
}

/** The event-loop delay of this process when it does nothing (the machine's floor), ms. */
async function idleDelay(ms: number): Promise<{ maxMs: number; p99Ms: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  await new Promise((r) => setTimeout(r, ms));
  h.disable();
  return { maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6 };
}

/** A burst of puts with up to inFlight at once, under an event-loop delay monitor (1 ms resolution). */
async function burst(store: KvStore, keys: readonly string[], kit: StoreBenchKit): Promise<{ maxMs: number; p99Ms: number; ms: number; putsPerS: number }> {
  const idx = Array.from({ length: S.burstPuts }, (_, j) => (j * 104_729) % keys.length);
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // Let the monitor's timer start before the burst.
  await new Promise((r) => setTimeout(r, 20));
  const t0 = kit.nowMs();
  await kit.pool(idx, S.burstInFlight, (i, j) => store.put(keys[i]!, record(keys[i]!.slice(keys[i]!.lastIndexOf('.') + 1), i, 'STATE_STOPPED', 300_000 + j)));
  const ms = kit.nowMs() - t0;
  // One more turn, so that a block that lasted to the end is sampled.
  await new Promise((r) => setTimeout(r, 5));
  h.disable();
  return { maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6, ms, putsPerS: (S.burstPuts / ms) * 1000 };
}

export async function storeCase(kit: StoreBenchKit): Promise<void> {
  const { record: rec, log, pct, nowMs, pool } = kit;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-store-bench-'));
  const lmdbDir = path.join(tmp, 'state');
  const fileDir = path.join(tmp, 'store');
  const noOld = path.join(tmp, 'no-old-store'); // the agent opens with migrateFrom; nothing to migrate here
  const openLmdb = (): Promise<KvStore> => LmdbStore.open(lmdbDir, { migrateFrom: noOld });
  const openFile = async (): Promise<KvStore> => new FileStore(fileDir);
  const t00 = nowMs();
  try {
    log(`store: ${S.records} object records, LmdbStore beside ${FILE_PEER}, in ${tmp}`);
    const keys: string[] = [];
    const values: string[] = [];
    let dataBytes = 0;
    for (let i = 0; i < S.records; i++) {
      const id = `obj-${randomBytes(8).toString('hex')}`;
      keys.push(Keys.workload(HOST, id));
      values.push(record(id, i));
      dataBytes += Buffer.byteLength(keys[i]!) + Buffer.byteLength(values[i]!);
    }
    const fileDataBytes = S.fileRecords === S.records ? dataBytes : keys.slice(0, S.fileRecords).reduce((a, k, i) => a + Buffer.byteLength(k) + Buffer.byteLength(values[i]!), 0);
    const partial = S.fileRecords === S.records ? '' : `; FileStore holds ${S.fileRecords} records, not ${S.records}`;
    const valueBytes = values.reduce((a, v) => a + Buffer.byteLength(v), 0);
    log(`  data: ${(dataBytes / 1e6).toFixed(2)} MB of keys and values; ${Math.round(valueBytes / S.records)} bytes a value, ${Math.round((dataBytes - valueBytes) / S.records)} a key${partial}`);

    // Fill, then close: what an agent leaves behind when it stops.
    let t0 = nowMs();
    let s: KvStore = await openLmdb();
    await pool(keys, S.fillInFlight, (k, i) => s.put(k, values[i]!));
    await s.close();
    const lmdbFillMs = nowMs() - t0;
    t0 = nowMs();
    s = await openFile();
    await pool(keys.slice(0, S.fileRecords), S.fillInFlight, (k, i) => s.put(k, values[i]!));
    await s.close();
    const fileFillMs = nowMs() - t0;
    log(`  filled: LmdbStore ${Math.round(lmdbFillMs)} ms, FileStore ${Math.round(fileFillMs)} ms`);

    // 3. Room on disk, of the closed stores.
    const ld = disk(lmdbDir);
    const fd = disk(fileDir);
    log(`  disk: LmdbStore ${ld.files} files, st_size ${(ld.size / 1e6).toFixed(2)} MB, allocated ${(ld.allocated / 1e6).toFixed(2)} MB (${((ld.allocated - ld.size) / 1e6).toFixed(2)} MB ahead); FileStore ${fd.files} files, st_size ${(fd.size / 1e6).toFixed(2)} MB, allocated ${(fd.allocated / 1e6).toFixed(2)} MB (+ its directory ${(fd.dirAllocated / 1e6).toFixed(2)} MB)`);

    // 1. Load, as the agent does at start-up (page cache warm: the files were just written). Alternate the two, take the median.
    const lLoads: number[] = [];
    const fLoads: number[] = [];
    for (let r = 0; r < S.loadReps; r++) {
      for (const [open, out, want] of [[openLmdb, lLoads, S.records], [openFile, fLoads, S.fileRecords]] as const) {
        const l = await load(open, nowMs);
        await l.store.close();
        if (l.n !== want) throw new Error(`loaded ${l.n} records, want ${want}`);
        out.push(l.ms);
      }
    }
    log(`  load runs (ms): LmdbStore ${lLoads.map(Math.round).join(', ')}; FileStore ${fLoads.map(Math.round).join(', ')}`);

    // 2. Puts into the full stores: one after another, then a burst.
    const lmdb = await openLmdb();
    const file = await openFile();
    const fkeys = keys.slice(0, S.fileRecords);
    await sequentialPuts(lmdb, keys, 1, S.seqWarm, nowMs);
    await sequentialPuts(file, fkeys, 1, S.seqWarm, nowMs);
    const lSeq = await sequentialPuts(lmdb, keys, 2, S.seqPuts, nowMs);
    const fSeq = await sequentialPuts(file, fkeys, 2, S.seqPuts, nowMs);
    const idle = await idleDelay(1000);
    log(`  event-loop delay of this process idle for 1 s (the floor): max ${idle.maxMs.toFixed(2)} ms, p99 ${idle.p99Ms.toFixed(2)} ms`);
    const lBurst = await burst(lmdb, keys, kit);
    const fBurst = await burst(file, fkeys, kit);
    await lmdb.close();
    await file.close();
    const la = disk(lmdbDir);
    log(`  after the puts: LmdbStore st_size ${(la.size / 1e6).toFixed(2)} MB, allocated ${(la.allocated / 1e6).toFixed(2)} MB`);

    const n = `n${S.records}`;
    const note = `LmdbStore vs FileStore${partial}`;
    const L = 'LmdbStore';
    const loadL = pct(lLoads, 50);
    rec({ agent_name: L, case: `store_load_${n}`, metric: 'open_list_parse_p50', unit: 'ms', agent: loadL, peer: pct(fLoads, 50), peer_name: FILE_PEER, note: `${note}; median of ${S.loadReps}, page cache warm` }, 'lower');
    rec({ agent_name: L, case: `store_load_${n}`, metric: 'open_list_parse_p50', unit: 'ms', agent: loadL, peer: 2000, peer_name: 'target (2 s)' }, 'lower');
    rec({ agent_name: L, case: `store_fill_${n}`, metric: 'puts_per_second', unit: '1/s', agent: (S.records / lmdbFillMs) * 1000, peer: (S.fileRecords / fileFillMs) * 1000, peer_name: FILE_PEER, note: `${note}; ${S.fillInFlight} in flight, into an empty store` }, 'higher');
    for (const p of [50, 99]) {
      rec({ agent_name: L, case: `store_put_seq_${n}`, metric: `p${p}_latency`, unit: 'ms', agent: pct(lSeq, p), peer: pct(fSeq, p), peer_name: FILE_PEER, note: `${note}; ${S.seqPuts} awaited puts one after another` }, 'lower');
    }
    rec({ agent_name: L, case: `store_put_seq_${n}`, metric: 'p99_latency', unit: 'ms', agent: pct(lSeq, 99), peer: 1, peer_name: 'target (1 ms)' }, 'lower');
    const bn = `${note}; ${S.burstPuts} puts, ${S.burstInFlight} in flight; idle floor max ${round2(idle.maxMs)} ms, p99 ${round2(idle.p99Ms)} ms`;
    rec({ agent_name: L, case: `store_put_burst_c${S.burstInFlight}`, metric: 'event_loop_delay_max', unit: 'ms', agent: lBurst.maxMs, peer: fBurst.maxMs, peer_name: FILE_PEER, note: bn }, 'lower');
    rec({ agent_name: L, case: `store_put_burst_c${S.burstInFlight}`, metric: 'event_loop_delay_p99', unit: 'ms', agent: lBurst.p99Ms, peer: fBurst.p99Ms, peer_name: FILE_PEER, note: bn }, 'lower');
    rec({ agent_name: L, case: `store_put_burst_c${S.burstInFlight}`, metric: 'puts_per_second', unit: '1/s', agent: lBurst.putsPerS, peer: fBurst.putsPerS, peer_name: FILE_PEER, note: bn }, 'higher');
    const dn = `data ${dataBytes} bytes (keys + values)`;
    const fRatio = fd.allocated / fileDataBytes;
    rec({ agent_name: L, case: `store_disk_${n}`, metric: 'file_size_over_data', unit: 'x', agent: ld.size / dataBytes, peer: fRatio, peer_name: `${FILE_PEER}, allocated`, note: `${note}; LmdbStore st_size ${ld.size} bytes, ${dn}` }, 'lower');
    rec({ agent_name: L, case: `store_disk_${n}`, metric: 'allocated_over_data', unit: 'x', agent: ld.allocated / dataBytes, peer: fRatio, peer_name: `${FILE_PEER}, allocated`, note: `${note}; LmdbStore st_blocks*512 ${ld.allocated} bytes (room allocated ahead with fallocate), FileStore ${fd.allocated} bytes in ${fd.files} files` }, 'lower');
    rec({ agent_name: L, case: `store_disk_${n}`, metric: 'allocated_over_data', unit: 'x', agent: ld.allocated / dataBytes, peer: 2, peer_name: 'target (2x)' }, 'lower');
  } finally {
    // FileStore's 100,000 files take a few seconds to remove.
    fs.rmSync(tmp, { recursive: true, force: true });
    log(`  store bench took ${Math.round((nowMs() - t00) / 1000)} s`);
  }
}
