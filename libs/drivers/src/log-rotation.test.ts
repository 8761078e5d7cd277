// Copytruncate on real files, with writers holding O_APPEND descriptors as
// the detached processes do.
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LogFiles } from './log-rotation';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-logrot-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let n = 0;
/** A fresh 0600 file holding content, watched by a LogFiles capped at maxBytes. */
function setup(content: string, maxBytes = 16): { file: string; logs: LogFiles } {
  const file = path.join(tmp, `p${n++}.log`);
  fs.writeFileSync(file, content, { mode: 0o600 });
  const logs = new LogFiles({ maxBytes });
  logs.watch(file);
  return { file, logs };
}

const mode = (f: string): number => fs.statSync(f).mode & 0o777;

describe('LogFiles', () => {
  it('leaves a file at the cap alone', () => {
    const { file, logs } = setup('x'.repeat(16));
    logs.check();
    assert.equal(fs.readFileSync(file, 'utf8'), 'x'.repeat(16));
    assert.equal(fs.existsSync(`${file}.1`), false);
  });

  it('moves a file over the cap to .1 and empties it, both 0600', () => {
    const { file, logs } = setup('first: over sixteen bytes\n');
    logs.check();
    assert.equal(fs.readFileSync(`${file}.1`, 'utf8'), 'first: over sixteen bytes\n');
    assert.equal(fs.statSync(file).size, 0);
    assert.equal(mode(file), 0o600);
    assert.equal(mode(`${file}.1`), 0o600);
  });

  it('keeps one rotated copy: a second rotation replaces .1, 0600 even from a looser file', () => {
    const { file, logs } = setup('first: over sixteen bytes\n');
    logs.check();
    fs.chmodSync(file, 0o644);
    fs.appendFileSync(file, 'second: over sixteen bytes\n');
    logs.check();
    assert.equal(fs.readFileSync(`${file}.1`, 'utf8'), 'second: over sixteen bytes\n');
    assert.equal(mode(`${file}.1`), 0o600);
    assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.startsWith(`${path.basename(file)}`)).sort(), [path.basename(file), `${path.basename(file)}.1`]);
  });

  it('lets an O_APPEND writer go on at the start of the truncated file, with no hole', () => {
    const { file, logs } = setup('');
    const fd = fs.openSync(file, 'a');
    try {
      fs.writeSync(fd, 'before the cut, over the cap\n');
      logs.check();
      fs.writeSync(fd, 'after\n');
    } finally {
      fs.closeSync(fd);
    }
    assert.equal(fs.readFileSync(file, 'utf8'), 'after\n');
    assert.equal(fs.readFileSync(`${file}.1`, 'utf8'), 'before the cut, over the cap\n');
  });

  it('rotates on its timer', async () => {
    const file = path.join(tmp, 'timed.log');
    fs.writeFileSync(file, 'over sixteen bytes, surely\n', { mode: 0o600 });
    const logs = new LogFiles({ maxBytes: 16, intervalMs: 10 });
    logs.watch(file);
    try {
      const deadline = Date.now() + 2_000;
      while (!fs.existsSync(`${file}.1`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(fs.statSync(file).size, 0);
    } finally {
      logs.close();
    }
  });

  it('does not rotate with no cap, nor an unwatched file', () => {
    const uncapped = setup('over sixteen bytes, surely\n', 0);
    uncapped.logs.check();
    assert.equal(fs.existsSync(`${uncapped.file}.1`), false);
    const unwatched = setup('over sixteen bytes, surely\n');
    unwatched.logs.unwatch(unwatched.file);
    unwatched.logs.check();
    assert.equal(fs.existsSync(`${unwatched.file}.1`), false);
  });

  it('removes the file and its rotated copy, and stops watching it', () => {
    const { file, logs } = setup('first: over sixteen bytes\n');
    logs.check();
    logs.remove(file);
    assert.equal(fs.existsSync(file), false);
    assert.equal(fs.existsSync(`${file}.1`), false);
    logs.remove(file); // already gone: fine
    fs.writeFileSync(file, 'a new one, over sixteen bytes\n');
    logs.check();
    assert.equal(fs.existsSync(`${file}.1`), false);
  });

  it('skips a missing file, and reports other failures without throwing', () => {
    const errors: string[] = [];
    const logs = new LogFiles({ maxBytes: 16, onError: (file) => errors.push(file) });
    const missing = path.join(tmp, 'missing.log');
    const dir = fs.mkdtempSync(path.join(tmp, 'a-dir-'));
    const ok = path.join(tmp, 'after-the-failures.log');
    fs.writeFileSync(ok, 'over sixteen bytes, surely\n');
    for (const f of [missing, dir, ok]) logs.watch(f);
    assert.doesNotThrow(() => logs.check());
    assert.deepEqual(errors, [dir]);
    assert.equal(fs.statSync(ok).size, 0, 'the files after a failure are still checked');
  });
});
