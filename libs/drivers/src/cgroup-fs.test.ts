import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InvalidArgumentError } from '@agent/grpc-kit';
import { CgroupFs, checkRelativeCgroupPath } from './cgroup-fs';
import { FigureReader } from './figure-reader';
import { parseNetDev } from './proc-figures';

describe('relative cgroup paths', () => {
  for (const bad of ['', '/abs', '..', 'a/../../b', 'a//b', './a', 'a/./b', 'a b', 'x'.repeat(256), 'a/b/c/d/e/f/g/h/i', 'cgroup.procs', 'memory.max']) {
    it(`refuses ${JSON.stringify(bad.slice(0, 20))}`, () => {
      assert.throws(() => checkRelativeCgroupPath('spec.cgroup.path', bad), (e: unknown) => e instanceof InvalidArgumentError && e.field === 'spec.cgroup.path');
    });
  }
  for (const good of ['a', 'tenants/a', 'a.b-c_d/e1']) {
    it(`accepts ${good}`, () => checkRelativeCgroupPath('f', good));
  }
});

describe('cgroup v1 on this host', () => {
  it('finds each controller from /proc/self/mountinfo', () => {
    const cg = new CgroupFs('agent-x');
    if (cg.version !== 'v1') return; // the host is v2: covered by the suite below and the contract tests
    const ref = cg.refFor('a/b');
    assert.equal(ref.paths.memory, '/sys/fs/cgroup/memory/agent-x/a/b');
    assert.ok(ref.paths.cpuacct?.endsWith('/agent-x/a/b'));
  });

  it('maps a pid to its cgroup directories', () => {
    const cg = new CgroupFs('agent-x');
    const ref = cg.refForPid(process.pid);
    for (const dir of Object.values(ref.paths)) assert.ok(fs.existsSync(dir), dir);
  });
});

// No cgroup v2 controllers can be had on this (v1) host, so the v2 paths run
// against a simulated unified tree: plain files laid out as the kernel does.
describe('cgroup v2 (simulated unified tree: this host has no v2 controllers)', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cg2-'));
  fs.writeFileSync(path.join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
  fs.writeFileSync(path.join(root, 'cgroup.subtree_control'), '');
  const mountinfo = `30 23 0:26 / ${root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n`;
  const cg = new CgroupFs('agent', mountinfo);

  it('detects v2', () => assert.equal(cg.version, 'v2'));

  it('creates the group and delegates controllers down the chain', () => {
    const ref = cg.create('g1');
    assert.equal(ref.paths.unified, path.join(root, 'agent/g1'));
    assert.match(fs.readFileSync(path.join(root, 'cgroup.subtree_control'), 'utf8'), /\+cpu \+memory \+pids \+io/);
  });

  it('writes and reads back limits in v2 syntax', () => {
    const ref = cg.refFor('g1');
    cg.applyLimits(ref, { cpus: 1.5, memoryBytes: 64 << 20, pidsLimit: 10 });
    assert.equal(fs.readFileSync(path.join(ref.paths.unified!, 'cpu.max'), 'utf8'), '150000 100000');
    assert.equal(fs.readFileSync(path.join(ref.paths.unified!, 'memory.max'), 'utf8'), String(64 << 20));
    assert.deepEqual(cg.readLimits(ref), { cpus: 1.5, memoryBytes: 64 << 20, pidsLimit: 10 });
    cg.applyLimits(ref, { cpus: 0, memoryBytes: 0, pidsLimit: 0 });
    assert.deepEqual(cg.readLimits(ref), { cpus: 0, memoryBytes: 0, pidsLimit: 0 });
  });

  it('reads figures from cpu.stat, memory.current, pids.current and io.stat', () => {
    const dir = cg.refFor('g1').paths.unified!;
    fs.writeFileSync(path.join(dir, 'cpu.stat'), 'usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n');
    fs.writeFileSync(path.join(dir, 'memory.current'), '4096\n');
    fs.writeFileSync(path.join(dir, 'memory.max'), 'max\n');
    fs.writeFileSync(path.join(dir, 'pids.current'), '3\n');
    fs.writeFileSync(path.join(dir, 'io.stat'), '8:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:16 rbytes=1 wbytes=2 rios=1 wios=1\n');
    const reader = new FigureReader(cg.refFor('g1'), undefined);
    assert.deepEqual(reader.read(), {
      cpuUsageNs: 1_234_000,
      memoryUsageBytes: 4096,
      memoryLimitBytes: undefined,
      pids: 3,
      netRxBytes: undefined,
      netTxBytes: undefined,
      blkioReadBytes: 101,
      blkioWriteBytes: 202,
    });
    reader.close();
  });

  it('maps a pid through the 0:: line', () => {
    // refForPid reads /proc; check the path mapping with this process's own line when it has one.
    const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
    if (!line) return;
    const ref = cg.refForPid(process.pid);
    assert.equal(ref.paths.unified, path.join(root, line.slice(3)));
  });
});

describe('network figures', () => {
  it('sums every interface but lo', () => {
    const text = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  5000      10    0    0    0     0          0         0     5000      10    0    0    0     0       0          0
  eth0:  1200      12    0    0    0     0          0         0      300       3    0    0    0     0       0          0
  eth1:    34       1    0    0    0     0          0         0       66       1    0    0    0     0       0          0
`;
    assert.deepEqual(parseNetDev(text), { rx: 1234, tx: 366 });
  });
});
