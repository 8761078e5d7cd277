import { after, before, describe, it, mock } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '@agent/grpc-kit';
import { CgroupFs, checkRelativeCgroupPath } from './cgroup-fs';
import { blockDevices, scratchDir } from '@agent/testkit';
import { NO_LIMITS } from './dimensions';
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
  const root = scratchDir('cg2-');
  fs.writeFileSync(path.join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
  fs.writeFileSync(path.join(root, 'cgroup.subtree_control'), '');
  const mountinfo = `30 23 0:26 / ${root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n`;
  const cg = new CgroupFs('agent', mountinfo);
  // A device this host has: the agent checks /sys/dev/block before writing a per-device limit.
  const [dev = '254:0'] = blockDevices();

  // io.max is one line per device holding every key; a write changes only the keys it names (a plain file would be overwritten).
  before(() => {
    const write = nodeFs.writeFileSync;
    mock.method(nodeFs, 'writeFileSync', (file: fs.PathOrFileDescriptor, data: string, ...rest: []) => {
      // The test laying out a group's files writes them whole, as the kernel would make them.
      if (typeof file !== 'string' || path.basename(file) !== 'io.max' || !fs.existsSync(file) || data === '') return write(file, data, ...rest);
      const [device = '', ...pairs] = data.trim().split(' ');
      const lines = new Map(fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => [l.split(' ')[0], l]));
      const keys = new Map(['rbps', 'wbps', 'riops', 'wiops'].map((k) => [k, 'max']));
      for (const pair of (lines.get(device) ?? '').split(' ').slice(1)) keys.set(pair.split('=')[0] ?? '', pair.split('=')[1] ?? 'max');
      for (const pair of pairs) keys.set(pair.split('=')[0] ?? '', pair.split('=')[1] ?? 'max');
      const line = `${device} ${[...keys].map(([k, v]) => `${k}=${v}`).join(' ')}`;
      if ([...keys.values()].every((v) => v === 'max')) lines.delete(device);
      else lines.set(device, line);
      write(file, [...lines.values()].map((l) => `${l}\n`).join(''));
    });
  });
  after(() => mock.restoreAll());

  it('detects v2', () => assert.equal(cg.version, 'v2'));

  it('creates the group and delegates controllers down the chain', () => {
    const ref = cg.create('g1');
    assert.equal(ref.paths.unified, path.join(root, 'agent/g1'));
    assert.match(fs.readFileSync(path.join(root, 'cgroup.subtree_control'), 'utf8'), /\+cpuset \+cpu \+memory \+pids \+io/);
  });

  /** What the kernel puts in a new group's directory (the simulation has no kernel to do it). */
  const interfaceFiles = (dir: string, without: readonly string[] = []): void => {
    const files: Record<string, string> = { 'cpu.max': 'max 100000', 'cpu.weight': '100', 'memory.max': 'max', 'memory.high': 'max', 'memory.swap.max': 'max', 'pids.max': 'max', 'cpuset.cpus': '', 'cpuset.mems': '', 'io.max': '' };
    for (const [f, v] of Object.entries(files)) if (!without.includes(f)) fs.writeFileSync(path.join(dir, f), v === '' ? '' : `${v}\n`);
  };

  it('writes and reads back every dimension in v2 syntax, and removes each', () => {
    const ref = cg.refFor('g1');
    const dir = ref.paths.unified!;
    interfaceFiles(dir);
    const all = {
      cpus: 1.5,
      memoryBytes: 64 << 20,
      pidsLimit: 10,
      cpusetCpus: '0-1',
      cpusetMems: '0',
      cpuWeight: 250,
      memoryHighBytes: 48 << 20,
      memorySwapBytes: 96 << 20,
      ioReadBps: { [dev]: 1 << 20 },
      ioWriteBps: { [dev]: 2 << 20 },
    };
    cg.applyLimits(ref, all);
    const files = Object.fromEntries(['cpu.max', 'memory.max', 'pids.max', 'cpuset.cpus', 'cpuset.mems', 'cpu.weight', 'memory.high', 'memory.swap.max', 'io.max'].map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]));
    assert.deepEqual(files, {
      'cpu.max': '150000 100000',
      'memory.max': String(64 << 20),
      'pids.max': '10',
      'cpuset.cpus': '0-1',
      'cpuset.mems': '0',
      'cpu.weight': '250',
      'memory.high': String(48 << 20),
      // The swap alone: the total less memory.max.
      'memory.swap.max': String(32 << 20),
      'io.max': `${dev} rbps=${1 << 20} wbps=${2 << 20} riops=max wiops=max\n`,
    });
    assert.deepEqual(cg.readLimits(ref), all);
    cg.applyLimits(ref, NO_LIMITS);
    assert.deepEqual(cg.readLimits(ref), NO_LIMITS);
    assert.equal(fs.readFileSync(path.join(dir, 'cpu.weight'), 'utf8'), '100', 'no weight is the default weight');
    assert.equal(fs.readFileSync(path.join(dir, 'memory.high'), 'utf8'), 'max');
    assert.equal(fs.readFileSync(path.join(dir, 'memory.swap.max'), 'utf8'), 'max');
    assert.equal(fs.readFileSync(path.join(dir, 'io.max'), 'utf8'), '', 'rbps=max and wbps=max: no line left');
  });

  it('keeps the swap allowance when memory alone changes, and the other key of a device when one map changes', () => {
    const ref = cg.refFor('g1');
    const dir = ref.paths.unified!;
    cg.applyLimits(ref, { memoryBytes: 64 << 20, memorySwapBytes: 96 << 20, ioReadBps: { [dev]: 1 << 20 }, ioWriteBps: { [dev]: 2 << 20 } });
    cg.applyLimits(ref, { memoryBytes: 128 << 20 });
    assert.equal(fs.readFileSync(path.join(dir, 'memory.swap.max'), 'utf8'), String(32 << 20));
    assert.equal(cg.readLimits(ref).memorySwapBytes, 160 << 20);
    cg.applyLimits(ref, { ioReadBps: {} });
    assert.equal(fs.readFileSync(path.join(dir, 'io.max'), 'utf8'), `${dev} rbps=max wbps=${2 << 20} riops=max wiops=max\n`);
    assert.deepEqual([cg.readLimits(ref).ioReadBps, cg.readLimits(ref).ioWriteBps], [{}, { [dev]: 2 << 20 }]);
    // Removing memory removes the total over it.
    cg.applyLimits(ref, { memoryBytes: 0, ioWriteBps: {} });
    assert.deepEqual(cg.readLimits(ref), NO_LIMITS);
  });

  it('refuses swap without memory.swap.max, io without the io controller, and a device the host lacks: FAILED_PRECONDITION naming it, writing nothing', () => {
    const ref = cg.create('g3');
    const dir = ref.paths.unified!;
    interfaceFiles(dir, ['memory.swap.max', 'io.max']);
    const refused = (re: RegExp) => (e: unknown): boolean => e instanceof FailedPreconditionError && re.test(e.message);
    assert.throws(() => cg.applyLimits(ref, { memoryBytes: 64 << 20, memorySwapBytes: 96 << 20 }, 'spec.resources'), refused(/^spec\.resources\.memory_swap_bytes: this host's kernel has no memory\.swap\.max/));
    assert.throws(() => cg.applyLimits(ref, { cpuWeight: 500, ioWriteBps: { [dev]: 1 << 20 } }), refused(/^resources\.io_write_bps: this host's kernel has no io\.max/));
    fs.writeFileSync(path.join(dir, 'io.max'), '');
    assert.throws(() => cg.applyLimits(ref, { cpuWeight: 500, ioReadBps: { [dev]: 1 << 20, '259:999': 1 << 20 } }), refused(/^resources\.io_read_bps: this host has no block device 259:999/));
    assert.equal(fs.readFileSync(path.join(dir, 'memory.max'), 'utf8'), 'max\n', 'nothing written');
    assert.equal(fs.readFileSync(path.join(dir, 'cpu.weight'), 'utf8'), '100\n', 'nothing written');
    assert.equal(fs.readFileSync(path.join(dir, 'io.max'), 'utf8'), '', 'nothing written');
  });

  it('refuses a dimension the kernel lacks with FAILED_PRECONDITION naming it, writing nothing', () => {
    const ref = cg.create('g2');
    const dir = ref.paths.unified!;
    interfaceFiles(dir, ['memory.high']);
    assert.throws(
      () => cg.applyLimits(ref, { cpuWeight: 500, memoryHighBytes: 64 << 20 }, 'spec.resources'),
      (e: unknown) => e instanceof FailedPreconditionError && /^spec\.resources\.memory_high_bytes: this host's kernel has no memory\.high/.test(e.message),
    );
    assert.equal(fs.readFileSync(path.join(dir, 'cpu.weight'), 'utf8'), '100\n', 'nothing written');
    cg.applyLimits(ref, { cpuWeight: 500 });
    assert.equal(cg.readLimits(ref).cpuWeight, 500);
  });

  it('refuses a dimension whose controller the host has not got', () => {
    const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'cg2-bare-'));
    fs.writeFileSync(path.join(bare, 'cgroup.controllers'), 'cpu memory pids\n');
    const v1Only = new CgroupFs('agent', `30 23 0:26 / ${bare}/memory rw - cgroup cgroup rw,memory\n31 23 0:27 / ${bare}/cpu rw - cgroup cgroup rw,cpu\n`);
    assert.equal(v1Only.version, 'v1');
    assert.throws(() => v1Only.applyLimits(v1Only.refFor('x'), { cpusetCpus: '0' }), (e: unknown) => e instanceof FailedPreconditionError && /^resources\.cpuset_cpus: this host has no cgroup v1 cpuset controller/.test(e.message));
    assert.throws(() => v1Only.applyLimits(v1Only.refFor('x'), { ioReadBps: { '8:0': 1 << 20 } }), (e: unknown) => e instanceof FailedPreconditionError && /^resources\.io_read_bps: this host has no cgroup v1 blkio controller/.test(e.message));
    fs.rmSync(bare, { recursive: true, force: true });
  });

  it('says which dimensions the host lacks before any group exists: a controller not mounted (v1) or not offered (v2), a file the root lacks', () => {
    const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'cg-lacking-'));
    const v1Only = new CgroupFs('agent', `30 23 0:26 / ${bare}/memory rw - cgroup cgroup rw,memory\n31 23 0:27 / ${bare}/cpu rw - cgroup cgroup rw,cpu\n`);
    assert.deepEqual(Object.keys(v1Only.lacking()).sort(), ['cpuset_cpus', 'cpuset_mems', 'io_read_bps', 'io_write_bps', 'pids_limit']);
    assert.equal(v1Only.lacking().io_read_bps, 'this host has no cgroup v1 blkio controller');

    const v2 = path.join(bare, 'unified');
    fs.mkdirSync(path.join(v2, 'agent'), { recursive: true });
    fs.writeFileSync(path.join(v2, 'cgroup.controllers'), 'cpu memory pids\n');
    const noIo = new CgroupFs('agent', `30 23 0:26 / ${v2} rw - cgroup2 cgroup2 rw\n`);
    assert.equal(noIo.version, 'v2');
    for (const f of ['cpu.max', 'cpu.weight', 'memory.max', 'memory.high', 'pids.max']) fs.writeFileSync(path.join(v2, 'agent', f), '');
    assert.deepEqual(noIo.lacking(), {
      cpuset_cpus: 'this host has no cgroup v2 cpuset controller',
      cpuset_mems: 'this host has no cgroup v2 cpuset controller',
      memory_swap_bytes: "this host's kernel has no memory.swap.max (cgroup v2)",
      io_read_bps: 'this host has no cgroup v2 io controller',
      io_write_bps: 'this host has no cgroup v2 io controller',
    });
    assert.deepEqual(new CgroupFs('agent', '').lacking().cpu_weight, 'this host has no cgroup hierarchy mounted');
    fs.rmSync(bare, { recursive: true, force: true });
  });

  it('reads figures from cpu.stat, memory.current, pids.current and io.stat', () => {
    const dir = cg.refFor('g1').paths.unified!;
    fs.writeFileSync(path.join(dir, 'cpu.stat'), 'usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnr_periods 40\nnr_throttled 5\nthrottled_usec 700\n');
    fs.writeFileSync(path.join(dir, 'memory.events'), 'low 0\nhigh 3\nmax 0\noom 0\noom_kill 0\n');
    fs.writeFileSync(path.join(dir, 'memory.current'), '4096\n');
    fs.writeFileSync(path.join(dir, 'memory.max'), 'max\n');
    fs.writeFileSync(path.join(dir, 'pids.current'), '3\n');
    fs.writeFileSync(path.join(dir, 'io.stat'), '8:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:16 rbytes=1 wbytes=2 rios=1 wios=1\n');
    fs.writeFileSync(path.join(dir, 'memory.stat'), 'anon 2048\nfile 2048\nactive_file 1024\ninactive_file 1000\n');
    fs.writeFileSync(path.join(dir, 'cpu.max'), '50000 100000\n');
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
      cpuThrottledPeriods: 5,
      cpuThrottledNs: 700_000,
      memoryHighEvents: 3,
      memoryWorkingSetBytes: 3096,
      cpuQuotaUs: 50_000,
      cpuPeriodUs: 100_000,
    });
    // No CPU limit: no quota (the period stays, as cAdvisor reads it); a cache larger than usage: no working set below 0.
    fs.writeFileSync(path.join(dir, 'cpu.max'), 'max 100000\n');
    fs.writeFileSync(path.join(dir, 'memory.stat'), 'inactive_file 8192\n');
    const again = reader.read();
    assert.equal(again.cpuQuotaUs, undefined);
    assert.equal(again.memoryWorkingSetBytes, 0);
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
