// IdTable: the Map it stands in for, and what it is for: a gRPC server whose
// client multiplexes calls on one connection does not promote every finished
// call once a full GC has fallen under load (id-table.ts).
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { internalv1 } from '@agent/proto';
import { connect } from './client';
import { IdTable } from './id-table';

describe('IdTable', () => {
  it('answers as a Map does for what Node and the pipe ask of it', () => {
    const t = new IdTable<string>();
    assert.equal(t.set(5, 'e').set(1, 'a').set(3, 'c'), t);
    t.set(3, 'C');
    assert.equal(t.size, 3);
    assert.equal(t.get(3), 'C');
    assert.equal(t.get(4), undefined);
    assert.equal(t.has(1), true);
    assert.equal(t.delete(1), true);
    assert.equal(t.delete(1), false);
    assert.equal(t.size, 2);
    assert.deepEqual([...t], [[3, 'C'], [5, 'e']]);
    assert.deepEqual([...t.keys()], [3, 5]);
    assert.deepEqual([...t.values()], ['C', 'e']);
    assert.equal(Object.prototype.toString.call(t), '[object IdTable]');
    // Node destroys a session's streams with forEach; each destroyed stream deletes itself meanwhile.
    const seen: number[] = [];
    t.forEach((_, id, table) => {
      seen.push(id);
      table.delete(id);
    });
    assert.deepEqual(seen, [3, 5]);
    assert.equal(t.size, 0);
    t.set(0, 'zero').clear();
    assert.equal(t.size, 0);
    assert.equal(t.has(0), false);
  });
});

interface Gcs {
  /** Promoted bytes of each scavenge between full GCs, after the first (not the empty one each full GC starts with). */
  readonly promoted: number[];
  readonly fullGcs: number;
  readonly calls: number;
}

/** Runs id-table.probe.js's server under forced full GCs while 16 calls stay in flight on one connection for ms. */
async function underLoad(server: 'kit' | 'bare', ms: number): Promise<Gcs> {
  const child = spawn(process.execPath, ['--expose-gc', '--trace-gc-nvp', path.join(__dirname, 'id-table.probe.js'), server], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the probe exited (${code}) before it listened`)));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^PORT (\d+)$/.exec(line);
      if (m) resolve(Number(m[1]));
      else lines.push(line);
    });
  });
  const peer = connect(internalv1.CollectorClient, `127.0.0.1:${port}`, { token: 'probe-token' });
  let calls = 0;
  try {
    const until = Date.now() + ms;
    await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        while (Date.now() < until) {
          await peer.call('getTask', { objectId: `o${i}` });
          calls++;
        }
      }),
    );
  } finally {
    peer.close();
    child.kill();
  }
  await new Promise((r) => child.once('close', r));
  const promoted: number[] = [];
  let fullGcs = 0;
  let afterFull = false;
  for (const line of lines) {
    const kind = / gc=(\w+) /.exec(line)?.[1];
    const bytes = / promoted=(\d+) /.exec(line)?.[1];
    if (kind === 'mc' || kind === 'mmc') {
      fullGcs++;
      afterFull = true;
    } else if (kind === 's' && bytes !== undefined) {
      // The scavenge a full GC starts with is empty; the ones between full GCs tell.
      if (fullGcs > 0 && !afterFull) promoted.push(Number(bytes));
      afterFull = false;
    }
  }
  return { promoted, fullGcs, calls };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

const KiB = 1024;

describe('a gRPC server under a multiplexing client and full GCs', () => {
  it("the agent's server promotes little per scavenge; a bare grpc-js server promotes every finished call", async (t) => {
    const kit = await underLoad('kit', 4_000);
    const bare = await underLoad('bare', 4_000);
    const report = (name: string, g: Gcs): string => `${name}: ${g.calls} calls, ${g.fullGcs} full GCs, median ${Math.round(median(g.promoted) / KiB)} KiB promoted over ${g.promoted.length} scavenges`;
    t.diagnostic(report('startGrpcServer', kit));
    t.diagnostic(report('bare grpc-js', bare));
    for (const g of [kit, bare]) {
      assert.ok(g.fullGcs >= 3 && g.promoted.length >= 10, `too little load to judge: ${report('', g)}`);
    }
    // Measured: 42-43 KiB against 1,981-2,064 KiB.
    assert.ok(median(kit.promoted) < 400 * KiB, report('startGrpcServer', kit));
    // The premise: without IdTables the regime is there. Should Node or V8 stop promoting through the session's Map, this fails and the tables may go.
    assert.ok(median(bare.promoted) > 4 * median(kit.promoted), report('bare grpc-js', bare));
  });
});
