// The JSON Lines report file on a real disk: capped by rotation to <file>.1.
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Logger } from '@agent/grpc-kit';
import { Module } from '@agent/option';
import { v1 } from '@agent/proto';
import { ReporterService } from './reporter';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-reporter-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const log = new Logger(Module.Reporter, 'error');
const report = (): v1.Report => v1.Report.fromPartial({ objectId: 'o1', timestamp: new Date() });

/** Every line of f, parsed; throws on one that is not JSON. */
function lines(f: string): unknown[] {
  const text = fs.readFileSync(f, 'utf8');
  assert.ok(text.endsWith('\n'), `${f} ends mid-line`);
  return text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as unknown);
}

describe('report file', () => {
  it('never grows past its cap: rotated to .1, both 0600, whole lines only', async () => {
    const file = path.join(tmp, 'capped', 'reports.jsonl');
    const cap = 4096;
    const service = new ReporterService({ hostId: 'h1', reportFile: file, reportFileMaxBytes: cap }, log);
    service.start('o1');
    let sent = 0;
    for (let i = 0; i < 200; i++) {
      const batch = Array.from({ length: 1 + (i % 7) }, report);
      service.send(batch);
      sent += batch.length;
      assert.ok(fs.statSync(file).size <= cap, `${fs.statSync(file).size} bytes after send ${i}`);
    }
    await service.close();
    assert.ok(fs.existsSync(`${file}.1`));
    for (const f of [file, `${file}.1`]) {
      assert.equal(fs.statSync(f).mode & 0o777, 0o600, f);
      assert.ok(fs.statSync(f).size <= cap, f);
      for (const r of lines(f)) assert.equal((r as { objectId?: string }).objectId, 'o1');
    }
    // Only one old copy is kept: earlier rotations are gone.
    assert.ok(lines(file).length + lines(`${file}.1`).length < sent);
  });

  it('continues the file it finds, counting what is already in it', async () => {
    const file = path.join(tmp, 'reopened.jsonl');
    fs.writeFileSync(file, `${JSON.stringify({ objectId: 'o1' })}\n`.repeat(100), { mode: 0o600 });
    const before = fs.statSync(file).size;
    const service = new ReporterService({ hostId: 'h1', reportFile: file, reportFileMaxBytes: before + 10 }, log);
    service.send([report()]);
    await service.close();
    assert.equal(fs.statSync(`${file}.1`).size, before);
    assert.equal(lines(file).length, 1);
  });

  it('grows without bound when the cap is 0', async () => {
    const file = path.join(tmp, 'uncapped.jsonl');
    const service = new ReporterService({ hostId: 'h1', reportFile: file, reportFileMaxBytes: 0 }, log);
    for (let i = 0; i < 100; i++) service.send([report()]);
    await service.close();
    assert.equal(lines(file).length, 100);
    assert.equal(fs.existsSync(`${file}.1`), false);
  });
});
