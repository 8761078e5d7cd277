// Least privilege for process objects, on real processes and the real cgroup
// tree (as root): who a process runs as, what reaches /bin/sh, which
// executables may run, and who can read the logs.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DriverError, InvalidArgumentError, PermissionDeniedError } from '@agent/grpc-kit';
import { CgroupDriver } from './cgroup-driver';
import { CgroupFs } from './cgroup-fs';
import { checkAllowedExecutable } from './exec-policy';
import { ProcessDriver, type ProcessDriverOptions } from './process-driver';
import type { ProcessWorkload } from './process-driver';
import { NO_LIMITS } from './dimensions';
import type { Runtime } from './types';
import { resolveUser } from './users';

// The agent runs with umask 077; what it starts must not inherit it.
process.umask(0o077);

const NOBODY = 65534;
const parent = `agent-user-${randomBytes(4).toString('hex')}`;
const cgfs = new CgroupFs(parent);
const cgroup = new CgroupDriver(cgfs);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-user-'));
fs.chmodSync(tmp, 0o755); // the processes, run as nobody, reach their files below it
const made: Array<{ driver: ProcessDriver; rt: Runtime }> = [];

function driverWith(over: Partial<ProcessDriverOptions> = {}): ProcessDriver {
  return new ProcessDriver(cgroup, { logDir: path.join(tmp, 'logs'), defaultCwd: '/', stopGraceMs: 500, defaultUser: 'nobody', allow: [], ...over });
}
const driver = driverWith();

function newId(): string {
  return `u${randomBytes(4).toString('hex')}`;
}

async function start(proc: Partial<ProcessWorkload>, d = driver, id = newId()): Promise<Runtime> {
  const rt = await d.create({
    objectId: id,
    name: id,
    labels: {},
    resources: NO_LIMITS,
    workload: { command: ['/bin/sleep', '30'], env: [], cwd: '', user: '', ...proc },
  });
  made.push({ driver: d, rt });
  return rt;
}

/** A create that must fail before anything runs, leaving no cgroup behind. */
async function refused(proc: Partial<ProcessWorkload>, check: (e: unknown) => boolean, d = driver): Promise<void> {
  const id = newId();
  await assert.rejects(start(proc, d, id), check);
  for (const dir of Object.values(cgfs.refFor(`proc-${id}`).paths)) assert.equal(fs.existsSync(dir), false, `${dir} left behind`);
}

function statusLine(pid: number, key: string): string[] {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${key}:`));
  assert.ok(line !== undefined, `no ${key} line`);
  return line.slice(key.length + 1).trim().split(/\s+/).filter(Boolean);
}

function ids(pid: number): { uid: string[]; gid: string[]; groups: string[] } {
  return { uid: statusLine(pid, 'Uid'), gid: statusLine(pid, 'Gid'), groups: statusLine(pid, 'Groups') };
}

/** The path of the object's group as /proc/<pid>/cgroup names it. */
const groupSuffix = (rt: Runtime): string => `/${parent}/${path.basename(Object.values(rt.cgroup.paths)[0] ?? '')}`;

after(async () => {
  for (const { driver: d, rt } of made) await d.remove(rt).catch(() => undefined);
  for (const dir of Object.values(cgfs.refFor('').paths)) fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('resolveUser', () => {
  const files = { passwd: path.join(tmp, 'passwd'), group: path.join(tmp, 'group') };
  before(() => {
    fs.writeFileSync(files.passwd, ['root:x:0:0:root:/root:/bin/bash', '# a comment', 'alice:x:1001:1002::/home/alice:/bin/sh', 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin', ''].join('\n'));
    fs.writeFileSync(files.group, ['root:x:0:', 'staff:x:50:alice', 'alice:x:1002:', ''].join('\n'));
  });

  const good: Array<[string, number, number]> = [
    ['alice', 1001, 1002],
    ['root', 0, 0],
    ['1001', 1001, 1002],
    ['1234:1234', 1234, 1234],
    ['0:0', 0, 0],
    ['4294967294:4294967294', 4294967294, 4294967294],
    ['alice:staff', 1001, 50],
    ['1234:staff', 1234, 50],
    ['alice:7', 1001, 7],
  ];
  for (const [spec, uid, gid] of good) {
    it(`resolves ${spec}`, () => assert.deepEqual(resolveUser(spec, files), { uid, gid, spec }));
  }

  const bad: Array<[string, RegExp]> = [
    ['bob', /no user "bob"/],
    ['4242', /uid 4242 is not in .*"uid:gid"/],
    ['alice:wheel', /no group "wheel"/],
    ['', /empty/],
    [':', /empty/],
    ['alice:', /empty group/],
    [':50', /empty user/],
    ['a:b:c', /"user" or "user:group"/],
    [' alice', /neither a number nor a valid name/],
    ['al ice', /neither a number nor a valid name/],
    ['-1', /neither a number nor a valid name/],
    ['1.5:1', /no user "1.5"/],
    ['4294967295:1', /out of range/],
    ['1:4294967295', /out of range/],
    ['99999999999999999999:1', /out of range/],
  ];
  for (const [spec, message] of bad) {
    it(`refuses ${JSON.stringify(spec)}`, () => {
      assert.throws(() => resolveUser(spec, files), (e: unknown) => e instanceof InvalidArgumentError && e.field === 'spec.process.user' && message.test(e.message));
    });
  }

  it('reads the real /etc/passwd by default', () => assert.deepEqual(resolveUser('nobody'), { uid: NOBODY, gid: NOBODY, spec: 'nobody' }));
});

describe('checkAllowedExecutable', () => {
  it('allows anything when the list is empty', () => checkAllowedExecutable([], '/usr/bin/env'));
  it('allows nothing through an entry that does not exist', () => {
    assert.throws(() => checkAllowedExecutable(['/nonexistent-dir'], '/usr/bin/env'), PermissionDeniedError);
  });
  it('refuses an executable that does not exist', () => {
    assert.throws(() => checkAllowedExecutable(['/'], '/nonexistent-file'), PermissionDeniedError);
  });
  it('does not take a name prefix for a directory', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'pre-'));
    fs.mkdirSync(`${dir}/a`);
    fs.mkdirSync(`${dir}/ab`);
    fs.writeFileSync(`${dir}/ab/x`, '');
    assert.throws(() => checkAllowedExecutable([`${dir}/a`], `${dir}/ab/x`), PermissionDeniedError);
    checkAllowedExecutable([`${dir}/ab`], `${dir}/ab/x`);
  });
});

describe('who a process runs as', () => {
  it('runs as nobody with no supplementary groups when the spec names no user', async () => {
    const rt = await start({});
    assert.deepEqual(ids(rt.pid), { uid: Array(4).fill(String(NOBODY)), gid: Array(4).fill(String(NOBODY)), groups: [] });
  });

  it('runs as uid:gid when both are numbers, even unknown ones', async () => {
    const rt = await start({ user: '1234:1234' });
    assert.deepEqual(ids(rt.pid), { uid: Array(4).fill('1234'), gid: Array(4).fill('1234'), groups: [] });
  });

  it('runs as root when asked', async () => {
    const rt = await start({ user: 'root' });
    assert.deepEqual(ids(rt.pid).uid, Array(4).fill('0'));
  });

  it('runs the command itself in its cgroup, with umask 022 and exactly PATH plus the caller env', async () => {
    const rt = await start({ command: ['sleep', '30'], env: ['FOO=a b', 'n=0', 'PATH=/usr/bin:/bin', 'FOO=c'] });
    const argv = fs.readFileSync(`/proc/${rt.pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
    assert.deepEqual(argv.slice(1), ['30']);
    assert.equal(path.basename(argv[0] ?? ''), 'sleep');
    assert.deepEqual(statusLine(rt.pid, 'Umask'), ['0022']);
    const env = fs.readFileSync(`/proc/${rt.pid}/environ`, 'utf8').split('\0').filter(Boolean).sort();
    assert.deepEqual(env, ['FOO=c', 'PATH=/usr/bin:/bin', 'n=0']);
    for (const line of fs.readFileSync(`/proc/${rt.pid}/cgroup`, 'utf8').trim().split('\n')) {
      if (/:(memory|pids|cpu,cpuacct|cpuacct,cpu|blkio):/.test(line)) assert.ok(line.endsWith(groupSuffix(rt)), line);
    }
  });

  it('refuses an unknown user, naming the field', async () => {
    await refused({ user: 'no-such-user-here' }, (e) => e instanceof InvalidArgumentError && e.field === 'spec.process.user');
    await refused({ user: '4242' }, (e) => e instanceof InvalidArgumentError && /uid:gid/.test(e.message));
  });

  it('says so when the default user is bad', async () => {
    await refused({}, (e) => e instanceof DriverError && /AGENT_PROCESS_USER.*spec\.process\.user/.test(e.message), driverWith({ defaultUser: 'no-such-user-here' }));
  });

  it('refuses a working directory the user cannot enter (the agent, root, could)', async () => {
    const priv = fs.mkdtempSync(path.join(tmp, 'private-'));
    const inner = path.join(priv, 'inner');
    fs.mkdirSync(inner, { mode: 0o755 });
    fs.chmodSync(priv, 0o700);
    await refused({ cwd: inner }, (e) => e instanceof DriverError && e.message.includes(`working directory ${inner} not accessible to user nobody`));
    const rt = await start({ cwd: inner, user: 'root' });
    assert.equal(fs.readlinkSync(`/proc/${rt.pid}/cwd`), inner);
  });

  it('refuses an executable the user may not execute', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'exe-'));
    fs.chmodSync(dir, 0o755);
    fs.copyFileSync('/bin/sleep', path.join(dir, 'rootonly'));
    fs.chmodSync(path.join(dir, 'rootonly'), 0o700);
    await refused({ command: [path.join(dir, 'rootonly'), '30'] }, (e) => e instanceof DriverError && /execute .*rootonly as user nobody/.test(e.message));
  });
});

describe('LD_PRELOAD reaches only the command', () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'preload-'));
  const lib = path.join(dir, 'mark.so');
  const out = path.join(dir, 'marks');
  const source = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* One line per process that loads this library: pid, uid and its memory (or v2) cgroup. */
__attribute__((constructor)) static void mark(void) {
  char line[1024], memory[1024] = "", unified[1024] = "";
  const char *path = getenv("PRELOAD_MARK");
  FILE *cg = fopen("/proc/self/cgroup", "r");
  if (path == NULL || cg == NULL) return;
  while (fgets(line, sizeof line, cg) != NULL) {
    line[strcspn(line, "\\n")] = 0;
    if (strstr(line, ":memory:") != NULL) strcpy(memory, line);
    else if (strncmp(line, "0::", 3) == 0) strcpy(unified, line);
  }
  fclose(cg);
  FILE *f = fopen(path, "a");
  if (f == NULL) return;
  fprintf(f, "%d %d %s\\n", (int)getpid(), (int)getuid(), memory[0] != 0 ? memory : unified);
  fclose(f);
}
`;

  it('is never loaded by the launcher, outside the cgroup or as another user', async (t) => {
    const cc = ['cc', 'gcc'].find((c) => {
      try {
        execFileSync(c, ['--version'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    });
    if (cc === undefined) return t.skip('no C compiler (cc or gcc) to build the preload library');
    fs.writeFileSync(path.join(dir, 'mark.c'), source);
    execFileSync(cc, ['-shared', '-fPIC', '-o', lib, path.join(dir, 'mark.c')]);
    fs.chmodSync(dir, 0o777);
    fs.chmodSync(lib, 0o755);
    fs.writeFileSync(out, '', { mode: 0o666 });
    fs.chmodSync(out, 0o666);

    const rt = await start({ command: ['/bin/sleep', '30'], env: [`LD_PRELOAD=${lib}`, `PRELOAD_MARK=${out}`] });
    const deadline = Date.now() + 2_000;
    while (fs.readFileSync(out, 'utf8') === '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n').filter(Boolean);
    assert.ok(lines.length >= 1, 'the command itself loads the library');
    for (const line of lines) {
      const [pid, uid, cg = ''] = line.split(' ');
      assert.equal(pid, String(rt.pid), line);
      assert.equal(uid, String(NOBODY), line);
      assert.ok(cg.endsWith(groupSuffix(rt)), `${line}: not in ${groupSuffix(rt)}`);
    }
  });
});

describe('AGENT_PROCESS_ALLOW', () => {
  const allowed = fs.mkdtempSync(path.join(tmp, 'allowed-'));
  const outside = fs.mkdtempSync(path.join(tmp, 'outside-'));
  const strict = driverWith({ allow: [allowed, '/bin/sleep'] });
  const isDenied = (e: unknown): boolean => e instanceof PermissionDeniedError && /^spec\.process\.command\[0\]: .* is outside AGENT_PROCESS_ALLOW$/.test(e.message);
  before(() => {
    for (const d of [allowed, outside]) fs.chmodSync(d, 0o755);
    fs.copyFileSync('/bin/sleep', path.join(allowed, 'mysleep'));
    fs.chmodSync(path.join(allowed, 'mysleep'), 0o755);
    fs.symlinkSync('/usr/bin/env', path.join(allowed, 'env-link'));
    fs.symlinkSync(path.join(allowed, 'mysleep'), path.join(outside, 'sleep-link'));
  });

  it('refuses an executable outside the list, by path or found on PATH', async () => {
    await refused({ command: ['/usr/bin/env', 'sleep', '30'] }, isDenied, strict);
    await refused({ command: ['env', 'sleep', '30'] }, isDenied, strict);
    await refused({ command: [`${allowed}/../../../usr/bin/env`, 'sleep', '30'] }, isDenied, strict);
  });

  it('refuses a symlink inside an allowed directory that leads outside', async () => {
    await refused({ command: [path.join(allowed, 'env-link'), 'sleep', '30'] }, isDenied, strict);
  });

  it('allows a listed file under any name that is the same file', async () => {
    for (const exe of ['/bin/sleep', '/usr/bin/sleep', 'sleep']) {
      const rt = await start({ command: [exe, '30'] }, strict);
      assert.equal(fs.readlinkSync(`/proc/${rt.pid}/exe`), fs.realpathSync('/bin/sleep'));
    }
  });

  it('allows what lies beneath a listed directory, and runs the real path that was checked', async () => {
    const rt = await start({ command: [path.join(outside, 'sleep-link'), '30'] }, strict);
    const argv0 = fs.readFileSync(`/proc/${rt.pid}/cmdline`, 'utf8').split('\0')[0];
    assert.equal(argv0, path.join(fs.realpathSync(allowed), 'mysleep'));
  });
});

describe('process logs', () => {
  it('are private to root (dir 0700, file 0600), and the process still writes its own', async () => {
    const logDir = path.join(tmp, 'lax-logs');
    fs.mkdirSync(logDir, { mode: 0o755 });
    fs.chmodSync(logDir, 0o755);
    const id = newId();
    const log = path.join(logDir, `${id}.log`);
    fs.writeFileSync(log, 'earlier\n', { mode: 0o644 });
    fs.chmodSync(log, 0o644);
    await start({ command: ['/bin/sh', '-c', 'echo "hello from $(id -u)"; exec sleep 30'] }, driverWith({ logDir }), id);
    assert.equal(fs.statSync(logDir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(log).mode & 0o777, 0o600);
    const deadline = Date.now() + 2_000;
    while (!fs.readFileSync(log, 'utf8').includes('hello') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(fs.readFileSync(log, 'utf8'), `earlier\nhello from ${NOBODY}\n`);
  });

  it('are made 0600 in a new 0700 directory', async () => {
    const logDir = path.join(tmp, 'new-logs', 'deeper');
    const id = newId();
    await start({}, driverWith({ logDir }), id);
    assert.equal(fs.statSync(logDir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(logDir, `${id}.log`)).mode & 0o777, 0o600);
  });

  it('are capped by rotation to .log.1 on the timer, and removed with the object', async () => {
    const logDir = path.join(tmp, 'capped-logs');
    const cap = 64 * 1024;
    // One 1 s interval of this writer (100 lines of 33 bytes, then a 10 ms sleep) is at most 330 KB; the rest is room for a late timer.
    const bound = cap + 512 * 1024;
    const d = driverWith({ logDir, logMaxBytes: cap });
    const id = newId();
    const log = path.join(logDir, `${id}.log`);
    const size = (f: string): number => (fs.existsSync(f) ? fs.statSync(f).size : 0);
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    try {
      const rt = await start({ command: ['/bin/sh', '-c', 'while :; do i=0; while [ $i -lt 100 ]; do echo 0123456789abcdef0123456789abcdef; i=$((i+1)); done; sleep 0.01; done'] }, d, id);
      const deadline = Date.now() + 5_000;
      while (!fs.existsSync(`${log}.1`) && Date.now() < deadline) await sleep(20);
      assert.ok(fs.existsSync(`${log}.1`), `no rotation: the log holds ${size(log)} bytes`);

      let cuts = 0;
      let last = size(log);
      for (const end = Date.now() + 2_500; Date.now() < end; await sleep(20)) {
        const now = size(log);
        if (now < last) cuts++;
        last = now;
        assert.ok(now <= bound, `live log at ${now} bytes`);
        assert.ok(size(`${log}.1`) <= bound, `.1 at ${size(`${log}.1`)} bytes`);
      }
      assert.ok(cuts >= 1, 'the log was cut again while the process kept writing');
      const live = fs.readFileSync(log, 'utf8');
      assert.ok(!live.includes('\0'), 'the writer went on at the start of the cut file, leaving no hole');
      assert.deepEqual(fs.readdirSync(logDir).filter((f) => f.startsWith(id)).sort(), [`${id}.log`, `${id}.log.1`]);

      await d.remove(rt);
      assert.deepEqual(fs.readdirSync(logDir).filter((f) => f.startsWith(id)), []);
    } finally {
      await d.close();
    }
  });

  it('are removed when a create fails and when the object is purged', async () => {
    const logDir = path.join(tmp, 'purged-logs');
    const d = driverWith({ logDir });
    const ours = (id: string): string[] => fs.readdirSync(logDir).filter((f) => f.startsWith(id));
    const priv = fs.mkdtempSync(path.join(tmp, 'private-'));
    fs.chmodSync(priv, 0o700);
    const failed = newId();
    // Fails once the log is open: nobody cannot enter the working directory.
    await assert.rejects(start({ cwd: priv }, d, failed), DriverError);
    assert.deepEqual(ours(failed), []);

    const id = newId();
    await start({}, d, id);
    fs.writeFileSync(path.join(logDir, `${id}.log.1`), 'an older run\n');
    await d.purge({ objectId: id, name: id, labels: {}, resources: NO_LIMITS, workload: { command: ['/bin/sleep', '30'], env: [], cwd: '', user: '' } });
    assert.deepEqual(ours(id), []);
  });
});
