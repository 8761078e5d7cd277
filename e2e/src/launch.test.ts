// Every way the agent's services are started runs node with NODE_FLAGS
// (libs/option/src/runtime.ts): npm start, the image's entrypoint (and so the
// compose services, which name only their script), and the tests' launches,
// so that the benchmarks and tests measure what users run.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NODE_FLAGS } from '@agent/option';
import { ROOT, startAgent, startSeparateAgent } from '@agent/testkit';

const read = (file: string): string => fs.readFileSync(path.join(ROOT, file), 'utf8');

/** A process's argv, from /proc. */
function argv(pid: number): string[] {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
}

/** argv is node, then NODE_FLAGS, then the script. */
function assertLaunch(args: readonly string[], script: string, what: string): void {
  assert.deepEqual(args.slice(1, 2 + NODE_FLAGS.length), [...NODE_FLAGS, path.join(ROOT, script)], what);
}

describe('node runs every service with NODE_FLAGS', () => {
  it('npm start', () => {
    const start = (JSON.parse(read('package.json')) as { scripts: { start: string } }).scripts.start;
    assert.ok(start.endsWith(` && node ${NODE_FLAGS.join(' ')} apps/daemon/dist/main.js`), start);
  });

  it("the image's entrypoint, which no compose service replaces", () => {
    const directive = (name: string): unknown => {
      const lines = read('Dockerfile').split('\n').filter((l) => l.startsWith(`${name} `));
      assert.equal(lines.length, 1, `one ${name}`);
      return JSON.parse(lines[0]!.slice(name.length + 1));
    };
    assert.deepEqual(directive('ENTRYPOINT'), ['node', ...NODE_FLAGS]);
    assert.deepEqual(directive('CMD'), ['apps/daemon/dist/main.js']);
    for (const file of ['docker-compose.yml', 'docker-compose.test.yml']) {
      const text = read(file);
      assert.doesNotMatch(text, /^\s*entrypoint:/m, `${file} keeps the entrypoint`);
      const commands = [...text.matchAll(/^\s*command:\s*(\[.*\])\s*$/gm)].map((m) => JSON.parse(m[1]!) as string[]);
      assert.ok(commands.length > 0, file);
      for (const c of commands) assert.match(c[0]!, /^[\w/-]+\/dist\/main\.js$/, `${file}: ${c.join(' ')} names a script, not node`);
    }
  });

  it('the daemon the tests and the benchmarks start', async () => {
    const agent = await startAgent();
    try {
      assertLaunch(argv(agent.child.pid!), 'apps/daemon/dist/main.js', 'daemon');
    } finally {
      await agent.stop();
    }
  });

  it('the five services the tests start as separate processes', async () => {
    const agent = await startSeparateAgent();
    try {
      assert.equal(agent.pids.length, 5);
      for (const pid of agent.pids) {
        const args = argv(pid);
        const script = path.relative(ROOT, args[args.length - 1]!);
        assert.match(script, /^apps\/\w+\/dist\/main\.js$/);
        assertLaunch(args, script, script);
      }
    } finally {
      await agent.stop();
    }
  });
});
