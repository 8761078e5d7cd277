// The network dataplane: the NetworkDriver (one nft transaction holding only
// the difference) beside agents that rebuild their iptables rules whole (one
// `iptables` process per rule, or one `iptables-restore`), in the same run on
// the same kernel; the flow log (NFLOG -> ulogd -> FlowSource) at increasing
// packet rates; quarantine beside what a shell script does; and a policy
// revision fanned out through NATS to a thousand watching agents.
//
// Everything here is the bench's own: nft tables agent_bench_net,
// agent_bench_flows and agent_bench_raw; the iptables chain AGENT_BENCH in
// the filter table, which nothing jumps to (programming it costs the same);
// NFLOG groups 4800 and 4801; members 10.77.0.0/16 and up (no traffic);
// 127.0.0.248 for the flows. The driver's sets are read by the names it
// gives them (members), to check the kernel has what program() resolved on.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlowSource } from '@agent/collector';
import { NetworkDriver, type Endpoint, type NetRule, type NetworkState } from '@agent/drivers';
import { policyv1 } from '@agent/proto';
import { Keys, NatsStore } from '@agent/store';
import { startNats } from '@agent/testkit';
import type { StoreBenchKit } from './store-bench';

const TABLE = 'agent_bench_net';
const FLOW_TABLE = 'agent_bench_flows';
const RAW_TABLE = 'agent_bench_raw';
const CHAIN = 'AGENT_BENCH';
const FLOW_GROUP = 4800;
const DRIVER_GROUP = 4801;
const FLOW_DST = '127.0.0.248';
const FLOW_PORT = 40_000;
const GROUPS = 20;

interface Sizes {
  rules: number;
  members: number;
  changes: number;
  unchanged: number;
  perRuleReps: number;
  restoreReps: number;
  quarantines: number;
  added: number;
  rates: number[];
  rateMs: number;
  flowPorts: number;
  agents: number;
  revisions: number;
}
const FULL: Sizes = { rules: 1_000, members: 1_000, changes: 50, unchanged: 20, perRuleReps: 3, restoreReps: 10, quarantines: 30, added: 100_000, rates: [2_000, 5_000, 10_000, 20_000, 50_000, 100_000], rateMs: 2_000, flowPorts: 1_000, agents: 1_000, revisions: 5 };
const QUICK: Sizes = { ...FULL, changes: 15, unchanged: 10, perRuleReps: 1, restoreReps: 3, quarantines: 10, added: 20_000, rates: [2_000, 5_000, 10_000], rateMs: 1_000, agents: 200, revisions: 3 };

// ---------------------------------------------------------------------------
// Processes

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** One process, stdin fed from input; never rejects (the caller reads code). */
function sh(cmd: string, args: readonly string[], input?: string): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => resolve({ code: -1, stdout: '', stderr: e.message }));
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
    if (input !== undefined) child.stdin!.end(input);
  });
}

async function must(cmd: string, args: readonly string[], input?: string): Promise<string> {
  const r = await sh(cmd, args, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ').slice(0, 200)} exited with ${r.code}: ${r.stderr.trim().slice(0, 500)}`);
  return r.stdout;
}

/** Removes what a run (this one, or one that crashed) left: only the bench's own names. */
async function cleanup(): Promise<void> {
  for (const t of [TABLE, FLOW_TABLE, RAW_TABLE]) await sh('nft', ['delete', 'table', 'inet', t]);
  if ((await sh('iptables', ['-S', CHAIN])).code === 0) {
    await sh('iptables', ['-F', CHAIN]);
    await sh('iptables', ['-X', CHAIN]);
  }
}

// ---------------------------------------------------------------------------
// The synthetic policy: members 10.77.x.y, groups g00..g19, rules group -> group on a TCP port

const addr = (i: number): string => `10.${77 + Math.floor(i / 65_536)}.${Math.floor(i / 256) % 256}.${i % 256}`;
const group = (g: number): string => `g${String(g).padStart(2, '0')}`;
const GROUP_NAMES = Array.from({ length: GROUPS }, (_, g) => group(g));
/** Where a rebuilding agent without ipset puts a group: one prefix (its members are not contiguous here; the cost is the same). */
const groupCidr = (name: string): string => `10.76.${Number(name.slice(1))}.0/24`;

const member = (i: number, g = i % GROUPS, quarantined = false): Endpoint => ({ objectId: `bench-${i}`, ip: addr(i), groups: [group(g)], mode: 'protect', pending: false, quarantined });
const netRule = (id: number, port: number): NetRule => ({ id, from: group(id % GROUPS), to: group((id * 7 + 3) % GROUPS), ports: [`tcp/${port}`], action: 'allow' });

/** One policy rule as one iptables rule (no set, no mark, no log: lighter than the agent's). */
function iptablesRule(r: NetRule): string[] {
  const port = r.ports[0]!.split('/')[1]!;
  return ['-A', CHAIN, '-s', groupCidr(r.from), '-d', groupCidr(r.to), '-p', 'tcp', '--dport', port, '-m', 'comment', '--comment', `r${r.id}`, '-j', 'ACCEPT'];
}

function restoreInput(lines: ReadonlyArray<readonly string[]>): string {
  return ['*filter', `:${CHAIN} - [0:0]`, `-F ${CHAIN}`, ...lines.map((l) => l.join(' ')), 'COMMIT', ''].join('\n');
}

/** A policy being edited: each change touches a few rules and moves a few members. */
class Policy {
  rules: NetRule[];
  groupOf: number[];
  private nextId: number;

  constructor(rules: number, members: number) {
    this.rules = Array.from({ length: rules }, (_, k) => netRule(k + 1, 10_000 + k));
    this.groupOf = Array.from({ length: members }, (_, i) => i % GROUPS);
    this.nextId = rules + 1;
  }

  state(quarantine?: number): NetworkState {
    return { endpoints: this.groupOf.map((g, i) => member(i, g, i === quarantine)), groups: GROUP_NAMES, rules: this.rules };
  }

  /** One rule's port changed, one rule removed, one added, three members moved to the next group. */
  change(c: number): void {
    const n = this.rules.length;
    const changed = (c * 37) % n;
    this.rules[changed] = { ...this.rules[changed]!, ports: [`tcp/${20_000 + c}`] };
    this.rules.splice((changed + 1 + ((c * 53) % (n - 1))) % n, 1);
    const id = this.nextId++;
    this.rules.push(netRule(id, 30_000 + (id % 30_000)));
    for (let j = 0; j < 3; j++) {
      const i = (c * 101 + j * 331) % this.groupOf.length;
      this.groupOf[i] = (this.groupOf[i]! + 1) % GROUPS;
    }
  }
}

// ---------------------------------------------------------------------------

export async function networkCase(kit: StoreBenchKit, opts: { quick: boolean }): Promise<void> {
  const S = opts.quick ? QUICK : FULL;
  const t00 = kit.nowMs();
  await cleanup();
  const driver = new NetworkDriver({ table: TABLE, logGroup: DRIVER_GROUP });
  try {
    await must('iptables', ['-N', CHAIN]);
    const policy = new Policy(S.rules, S.members);
    await policyCase(kit, S, driver, policy);
    await quarantineCase(kit, S, driver, policy);
    await elementsCase(kit, S, driver, policy);
    await driver.clear();
    await cleanup();
    await flowsCase(kit, S);
    await fanoutCase(kit, S, policy);
  } finally {
    await driver.clear().catch(() => undefined);
    await cleanup();
    kit.log(`  network bench took ${Math.round((kit.nowMs() - t00) / 1000)} s`);
  }
}

async function timed(kit: StoreBenchKit, fn: () => Promise<unknown>): Promise<number> {
  const t0 = kit.nowMs();
  await fn();
  return kit.nowMs() - t0;
}

/** 1. policy_change: a handful of rules and members changed in a 1,000/1,000 policy, until nft returned. */
async function policyCase(kit: StoreBenchKit, S: Sizes, driver: NetworkDriver, policy: Policy): Promise<void> {
  const { record, log, pct } = kit;
  const size = `r${S.rules}_m${S.members}`;
  log(`network: policy of ${S.rules} rules and ${S.members} members in ${GROUPS} groups (nft table inet ${TABLE})`);
  let firstChanges = 0;
  const first = await timed(kit, async () => (firstChanges = (await driver.program(policy.state())).changes));
  const unchanged: number[] = [];
  for (let i = 0; i < S.unchanged; i++) {
    const t0 = kit.nowMs();
    const r = await driver.program(policy.state());
    unchanged.push(kit.nowMs() - t0);
    if (r.changes !== 0) throw new Error(`the same state again made ${r.changes} changes`);
  }
  // Two changes to warm the JIT on this path; then the timed ones.
  const changes: number[] = [];
  let commands = 0;
  for (let c = 0; c < S.changes + 2; c++) {
    policy.change(c);
    const state = policy.state();
    const t0 = kit.nowMs();
    const r = await driver.program(state);
    const ms = kit.nowMs() - t0;
    if (r.changes === 0) throw new Error(`policy change ${c} made no change`);
    if (c >= 2) {
      changes.push(ms);
      commands += r.changes;
    }
  }
  const readMs = await timed(kit, () => must('nft', ['-j', '-a', 'list', 'table', 'inet', TABLE]));
  log(`  agent: first program ${Math.round(first)} ms (${firstChanges} commands); ${S.changes} changes p50 ${kit.pct(changes, 50).toFixed(1)} ms, max ${Math.max(...changes).toFixed(1)} ms (${(commands / S.changes).toFixed(1)} commands each); a read of the table ${readMs.toFixed(1)} ms`);

  // The peers: the same rules applied whole, as agents that rebuild do.
  const lines = policy.rules.map(iptablesRule);
  const perRule: number[] = [];
  for (let k = 0; k < S.perRuleReps; k++) {
    await must('iptables', ['-F', CHAIN]);
    const t0 = kit.nowMs();
    for (const l of lines) await must('iptables', l);
    perRule.push(kit.nowMs() - t0);
  }
  const input = restoreInput(lines);
  const restore: number[] = [];
  for (let k = 0; k < S.restoreReps; k++) restore.push(await timed(kit, () => must('iptables-restore', ['--noflush'], input)));
  const count = (await must('iptables', ['-S', CHAIN])).split('\n').filter((l) => l.startsWith('-A')).length;
  if (count !== lines.length) throw new Error(`${CHAIN} holds ${count} rules, want ${lines.length}`);
  log(`  peers: ${S.perRuleReps} x ${lines.length} iptables -A: ${perRule.map(Math.round).join(', ')} ms; iptables-restore: ${restore.map(Math.round).join(', ')} ms`);

  const PER_RULE = `iptables -A per rule (${lines.length} processes)`;
  const RESTORE = `iptables-restore --noflush (flush + ${lines.length} rules)`;
  const note = `${S.changes} changes, each: 1 rule's port changed, 1 removed, 1 added, 3 members moved (${(commands / S.changes).toFixed(1)} nft commands); the peers rebuild the chain`;
  const agentName = 'NetworkDriver.program';
  for (const p of [50, 99]) {
    record({ case: `policy_change_${size}`, metric: `p${p}_until_programmed`, unit: 'ms', agent: pct(changes, p), agent_name: agentName, peer: pct(perRule, p), peer_name: PER_RULE, note: `${note}; ${S.perRuleReps} reps` }, 'lower');
    record({ case: `policy_change_${size}`, metric: `p${p}_until_programmed`, unit: 'ms', agent: pct(changes, p), agent_name: agentName, peer: pct(restore, p), peer_name: RESTORE, note: `${note}; ${S.restoreReps} reps` }, 'lower');
  }
  record({ case: `policy_change_${size}`, metric: 'p99_until_programmed', unit: 'ms', agent: pct(changes, 99), agent_name: agentName, peer: 100, peer_name: 'target (100 ms)' }, 'lower');
  record({ case: `policy_change_unchanged_${size}`, metric: 'p50_until_programmed', unit: 'ms', agent: pct(unchanged, 50), agent_name: agentName, peer: pct(restore, 50), peer_name: RESTORE, note: `the same state again: 0 nft commands, ${S.unchanged} reps; a rebuilder applies it all again` }, 'lower');
  record({ case: `policy_first_program_${size}`, metric: 'ms_from_no_table', unit: 'ms', agent: first, agent_name: agentName, peer: pct(restore, 50), peer_name: RESTORE, note: `${firstChanges} nft commands: table, ${GROUPS + 6} sets, 15 chains, the rules; one run` }, 'lower');
}

/** 4. quarantine_latency: one member quarantined in the programmed policy (set element + conntrack cut), then lifted. */
async function quarantineCase(kit: StoreBenchKit, S: Sizes, driver: NetworkDriver, policy: Policy): Promise<void> {
  const { record, log, pct } = kit;
  log(`network: ${S.quarantines} quarantines, one member at a time`);
  const agent: number[] = [];
  const agentCut: number[] = [];
  let cut = 0;
  let cutError: string | undefined;
  await driver.program(policy.state()); // the state the quarantines start from, whatever the peers took
  // Each conntrack -D walks the whole table: its size (other work on the host) weighs on both sides.
  const entries = async (): Promise<number> => Number((await sh('conntrack', ['-C'])).stdout.trim());
  const entries0 = await entries();
  for (let k = 0; k < S.quarantines + 2; k++) {
    const who = (k * 97) % S.members;
    const t0 = kit.nowMs();
    const r = await driver.program(policy.state(who));
    const ms = kit.nowMs() - t0;
    // Its packets are dropped once program() answers; its conntrack entries go after.
    const q = await r.quarantineCut;
    const msCut = kit.nowMs() - t0;
    cut += q?.cut ?? 0;
    cutError ??= q?.cutError;
    if (r.changes === 0) throw new Error(`quarantine of ${addr(who)} made no change`);
    if (k >= 2) agent.push(ms);
    if (k >= 2) agentCut.push(msCut);
    await driver.program(policy.state());
  }
  if (cutError) log(`  conntrack cut failed: ${cutError}`);

  // The peer: what a shell script does, into the chain that holds the 1,000 rules.
  const shell: number[] = [];
  const shellDropped: number[] = [];
  for (let k = 0; k < S.quarantines; k++) {
    const ip = addr((k * 97) % S.members);
    const t0 = kit.nowMs();
    await must('iptables', ['-I', CHAIN, '-s', ip, '-j', 'DROP']);
    await must('iptables', ['-I', CHAIN, '-d', ip, '-j', 'DROP']);
    shellDropped.push(kit.nowMs() - t0);
    const r = await sh('conntrack', ['-D', '-s', ip]); // exit 1: nothing to delete
    shell.push(kit.nowMs() - t0);
    if (r.code !== 0 && r.code !== 1) throw new Error(`conntrack -D exited with ${r.code}: ${r.stderr}`);
    await must('iptables', ['-D', CHAIN, '-s', ip, '-j', 'DROP']);
    await must('iptables', ['-D', CHAIN, '-d', ip, '-j', 'DROP']);
  }
  const conntrack = `${entries0} to ${await entries()} conntrack entries on the host`;
  log(`  ${conntrack}`);
  const note = `${S.quarantines} reps in a ${S.rules}-rule policy; agent: quarantine set element (program() answers: dropped), then 4 conntrack -D (orig/reply src/dst) at once, ${cut} entries cut${cutError ? '; cut failed' : ''}; ${conntrack}`;
  for (const p of [50, 99]) {
    record({ case: 'quarantine_latency', metric: `p${p}_until_dropped`, unit: 'ms', agent: pct(agent, p), agent_name: 'NetworkDriver.program', peer: pct(shellDropped, p), peer_name: 'shell: iptables -I -s DROP, -I -d DROP', note }, 'lower');
    record({ case: 'quarantine_latency', metric: `p${p}_until_cut`, unit: 'ms', agent: pct(agentCut, p), agent_name: 'NetworkDriver.program + quarantineCut', peer: pct(shell, p), peer_name: 'shell: iptables -I -s DROP, -I -d DROP, conntrack -D -s', note }, 'lower');
  }
}

/** How many elements a set of the driver's table holds in the kernel. */
async function setSize(table: string, set: string): Promise<number> {
  const out = JSON.parse(await must('nft', ['-j', 'list', 'set', 'inet', table, set])) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
  return out.nftables.find((i) => i.set)?.set?.elem?.length ?? 0;
}

/**
 * The same elements added by nft alone, in one JSON transaction without echo,
 * to a table of its own holding the same sets and base members: what the
 * kernel and nft take, without the driver.
 */
async function rawNftMs(kit: StoreBenchKit, base: readonly Endpoint[], added: readonly Endpoint[]): Promise<number> {
  const t = { family: 'inet', table: RAW_TABLE };
  const sets = ['members', 'mode_protect', ...GROUP_NAMES];
  const elements = (es: readonly Endpoint[]): object[] => [
    { add: { element: { ...t, name: 'members', elem: es.map((e) => e.ip) } } },
    { add: { element: { ...t, name: 'mode_protect', elem: es.map((e) => e.ip) } } },
    ...GROUP_NAMES.map((g) => ({ add: { element: { ...t, name: g, elem: es.filter((e) => e.groups[0] === g).map((e) => e.ip) } } })),
  ];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-bench-nft-'));
  const file = path.join(dir, 'transaction.json');
  try {
    const setup = [{ add: { table: { family: 'inet', name: RAW_TABLE } } }, ...sets.map((name) => ({ add: { set: { ...t, name, type: 'ipv4_addr' } } })), ...elements(base)];
    fs.writeFileSync(file, JSON.stringify({ nftables: setup }));
    await must('nft', ['-j', '-f', file]);
    fs.writeFileSync(file, JSON.stringify({ nftables: elements(added) }));
    return await timed(kit, () => must('nft', ['-j', '-f', file]));
  } finally {
    await sh('nft', ['delete', 'table', 'inet', RAW_TABLE]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** 2. elements_per_second: one program() adding members to the groups of the programmed table. */
async function elementsCase(kit: StoreBenchKit, S: Sizes, driver: NetworkDriver, policy: Policy): Promise<void> {
  const { record, log } = kit;
  log(`network: one program() adding ${S.added} members to ${S.members}`);
  const base = policy.state();
  const added = Array.from({ length: S.added }, (_, k) => member(S.members + k));
  const state: NetworkState = { ...base, endpoints: [...base.endpoints, ...added] };
  let changes = 0;
  const ms = await timed(kit, async () => (changes = (await driver.program(state)).changes));
  const perS = (S.added / ms) * 1000;
  const inKernel = await setSize(TABLE, 'members');
  if (inKernel !== S.members + S.added) throw new Error(`the members set holds ${inKernel} elements after program(), want ${S.members + S.added}`);
  // One add element per set is sent (members, mode, each group). Fewer reported: the first nft run failed after the kernel had
  // committed (its echo of 3 elements a member overflows netlink: ENOBUFS), the driver read the table again and diffed that.
  const sent = GROUPS + 2;
  const echoLost = changes < sent ? `; program() reported ${changes} of the ${sent} commands: nft failed on its echo after the kernel committed, the driver read the table again` : '';
  const lines = added.map((e) => ['-A', CHAIN, '-s', e.ip!, '-j', 'ACCEPT']);
  const input = restoreInput(lines);
  const peerMs = await timed(kit, () => must('iptables-restore', ['--noflush'], input));
  const peerPerS = (lines.length / peerMs) * 1000;
  await must('iptables', ['-F', CHAIN]);
  const rawMs = await rawNftMs(kit, base.endpoints, added);
  log(`  agent ${Math.round(ms)} ms (${changes} nft commands${echoLost}); iptables-restore ${Math.round(peerMs)} ms; nft -j -f alone ${Math.round(rawMs)} ms`);
  const note = `${S.added} members added to a ${S.members}-member table in one program() (${Math.round(ms)} ms; 3 set elements each: members, mode, group)${echoLost}`;
  const AGENT = 'NetworkDriver.program';
  const size = `elements_per_second_add${S.added}`;
  record({ case: size, metric: 'members_per_second', unit: '1/s', agent: perS, agent_name: AGENT, peer: peerPerS, peer_name: `iptables-restore --noflush (${S.added} rules, one per address)`, note: `${note}; peer ${Math.round(peerMs)} ms` }, 'higher');
  record({ case: size, metric: 'members_per_second', unit: '1/s', agent: perS, agent_name: AGENT, peer: (S.added / rawMs) * 1000, peer_name: 'nft -j -f alone, no echo (same sets and elements, table of its own)', note: `${note}; nft alone ${Math.round(rawMs)} ms` }, 'higher');
  record({ case: size, metric: 'members_per_second', unit: '1/s', agent: perS, agent_name: AGENT, peer: 100_000, peer_name: 'target (100,000/s)' }, 'higher');
}

/** A child process that sends UDP datagrams at a rate to FLOW_DST over ports; prints {sent, ms}. */
const SENDER = `
const dgram = require('node:dgram');
const [rate, ms, base, ports] = process.argv.slice(1, 5).map(Number);
const dst = process.argv[5];
const total = Math.round((rate * ms) / 1000);
const sock = dgram.createSocket('udp4');
sock.on('error', () => {});
sock.bind(0, '127.0.0.1', () => {
  const buf = Buffer.from('x');
  let queued = 0, sent = 0, failed = 0;
  const t0 = performance.now();
  const done = () => { if (sent + failed < queued) return setImmediate(done); process.stdout.write(JSON.stringify({ sent, failed, ms: performance.now() - t0 })); sock.close(); };
  const tick = () => {
    const want = Math.min(total, Math.floor((rate * (performance.now() - t0)) / 1000));
    while (queued < want) { sock.send(buf, base + (queued % ports), dst, (err) => (err ? failed++ : sent++)); queued++; }
    if (queued < total) setTimeout(tick, 2); else done();
  };
  tick();
});`;

/** 3. flows_per_second: distinct UDP flows logged by an nft rule of our own, read by FlowSource, at increasing rates. */
async function flowsCase(kit: StoreBenchKit, S: Sizes): Promise<void> {
  const { record, log, nowMs } = kit;
  log(`network: flows at ${S.rates.join(', ')}/s for ${S.rateMs / 1000} s each (NFLOG group ${FLOW_GROUP}, ulogd, FlowSource)`);
  // A fixed dir: a ulogd left by a crashed run is found by its pid file there and killed.
  const dir = path.join(os.tmpdir(), 'agent-bench-flowlog');
  await must('nft', ['-f', '-'], `table inet ${FLOW_TABLE} {
    chain output {
      type filter hook output priority 0; policy accept;
      ip daddr ${FLOW_DST} meta l4proto udp log prefix "A:7:out" group ${FLOW_GROUP} snaplen 64
    }
  }\n`);
  const errors: string[] = [];
  const source = new FlowSource({ group: FLOW_GROUP, dir, windowMs: 250, onError: (m) => errors.push(m) });
  let logged = 0;
  let flows = 0;
  const unsubscribe = await source.subscribe((b) => {
    for (const f of b.flows) {
      if (f.flow?.dstIp !== FLOW_DST) continue;
      logged += f.flow.count;
      flows++;
    }
  });
  const steps: Array<{ rate: number; sent: number; logged: number; ms: number; achieved: number }> = [];
  try {
    for (const rate of S.rates) {
      const before = logged;
      const out = await must(process.execPath, ['-e', SENDER, String(rate), String(S.rateMs), String(FLOW_PORT), String(S.flowPorts), FLOW_DST]);
      const { sent, ms } = JSON.parse(out) as { sent: number; ms: number };
      const achieved = (sent / ms) * 1000;
      // Until everything came, or nothing more for a second (the window is 250 ms).
      let last = logged;
      let still = nowMs();
      while (logged - before < sent && nowMs() - still < 1_000) {
        await new Promise((r) => setTimeout(r, 50));
        if (logged !== last) [last, still] = [logged, nowMs()];
      }
      steps.push({ rate, sent, logged: logged - before, ms, achieved });
      log(`  ${rate}/s: sent ${sent} (${Math.round(achieved)}/s achieved), logged ${logged - before}`);
    }
  } finally {
    unsubscribe();
    await source.close();
    await sh('nft', ['delete', 'table', 'inet', FLOW_TABLE]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (errors.length > 0) log(`  flow source errors: ${errors.slice(0, 3).join('; ')}`);
  const loss = (s: (typeof steps)[number]): number => (100 * Math.max(0, s.sent - s.logged)) / s.sent;
  // The rate the sender achieved, not the one asked for: at the top it may fall short.
  const clean = steps.filter((s) => s.logged >= s.sent);
  const best = clean.length > 0 ? Math.max(...clean.map((s) => s.achieved)) : 0;
  const top = steps[steps.length - 1]!;
  const per = steps.map((s) => `${s.rate}/s (${Math.round(s.achieved)} achieved): ${s.logged}/${s.sent} logged, ${loss(s).toFixed(2)}% lost`).join('; ');
  record({ case: 'flows_per_second', metric: 'highest_rate_zero_loss', unit: '1/s', agent: best, agent_name: 'ulogd + FlowSource', peer: 2_000, peer_name: 'target (2,000/s)', note: `distinct UDP flows over ${S.flowPorts} ports from one sender process, ${S.rateMs / 1000} s a rate; ${per}; ${flows} flows in the batches` }, 'higher');
  record({ case: 'flows_per_second', metric: `logged_per_second_at_top_rate`, unit: '1/s', agent: (top.logged / top.ms) * 1000, agent_name: 'ulogd + FlowSource', peer: 2_000, peer_name: 'target (2,000/s)', note: `top rate ${top.rate}/s asked, ${Math.round(top.achieved)}/s sent: ${loss(top).toFixed(2)}% lost` }, 'higher');
}

/** 5. fleet_fanout: agents watching config.network through the NATS store; one put, until each has seen it. */
async function fanoutCase(kit: StoreBenchKit, S: Sizes, policy: Policy): Promise<void> {
  const { record, log, pct, nowMs, pool } = kit;
  const value = (revision: number): string =>
    JSON.stringify(
      policyv1.Policy.toJSON(
        policyv1.Policy.fromPartial({
          revision,
          groups: GROUP_NAMES.map((name) => ({ name, selector: { app: name }, mode: policyv1.Mode.MODE_PROTECT })),
          rules: policy.rules.map((r) => ({ id: r.id, from: r.from, to: r.to, ports: [...r.ports], action: policyv1.Action.ACTION_ALLOW })),
        }),
      ),
    );
  const bytes = Buffer.byteLength(value(1));
  log(`network: ${S.agents} agents watching ${Keys.network} on nats-server, ${S.revisions} revisions of ${Math.round(bytes / 1024)} KiB`);
  const nats = await startNats();
  const stores: NatsStore[] = [];
  const unwatch: Array<() => void> = [];
  let writer: NatsStore | undefined;
  try {
    writer = await NatsStore.open(nats.url, 'agent', 'bench-writer');
    await writer.put(Keys.network, value(1));
    const t0 = nowMs();
    const opened = await pool(Array.from({ length: S.agents }, (_, i) => i), 32, (i) => NatsStore.open(nats.url, 'agent', `bench-agent-${i}`).catch((err: Error) => err));
    const failed = opened.filter((o): o is Error => o instanceof Error);
    stores.push(...opened.filter((o): o is NatsStore => !(o instanceof Error)));
    if (failed.length > 0) log(`  ${failed.length} connections failed (${failed[0]!.message}): their watchers share the others`);
    if (stores.length === 0) throw new Error('no NATS connection opened');
    log(`  ${stores.length} connections in ${Math.round(nowMs() - t0)} ms`);

    let want = 1;
    let seen = 0;
    const seenAt = new Float64Array(S.agents);
    let all: (() => void) | undefined;
    for (let i = 0; i < S.agents; i++) {
      unwatch.push(
        stores[i % stores.length]!.watch(Keys.network, (c) => {
          const m = /^\{"revision":(\d+)/.exec(c.value ?? '');
          if (Number(m?.[1]) !== want || seenAt[i] !== 0) return;
          seenAt[i] = nowMs();
          if (++seen === S.agents) all?.();
        }),
      );
    }
    const everyone = (ms: number): Promise<boolean> =>
      new Promise((resolve) => {
        if (seen === S.agents) return resolve(true);
        const timer = setTimeout(() => resolve(false), ms);
        all = () => (clearTimeout(timer), resolve(true));
      });
    if (!(await everyone(60_000))) throw new Error(`only ${seen} of ${S.agents} watchers saw the first value`);
    log(`  all watching after ${Math.round(nowMs() - t0)} ms`);

    const lat: number[] = [];
    let missed = 0;
    for (let r = 2; r < 2 + S.revisions; r++) {
      await new Promise((res) => setTimeout(res, 300));
      seenAt.fill(0);
      seen = 0;
      want = r;
      const v = value(r);
      const t1 = nowMs();
      await writer.put(Keys.network, v);
      if (!(await everyone(10_000))) missed += S.agents - seen;
      for (const at of seenAt) if (at !== 0) lat.push(at - t1);
      log(`  revision ${r}: ${seen} seen, last after ${Math.round(Math.max(...[...seenAt].map((a) => a - t1)))} ms`);
    }
    const note = `${S.agents} watchers (KvStore.watch) on ${stores.length} NATS connections, all in this one process; ${S.revisions} revisions of ${bytes} bytes (${S.rules} rules)${missed > 0 ? `; ${missed} deliveries missed` : ''}`;
    for (const [metric, v] of [['p50_seen', pct(lat, 50)], ['p99_seen', pct(lat, 99)], ['max_seen', Math.max(...lat)]] as const) {
      record({ case: `fleet_fanout_n${S.agents}`, metric, unit: 'ms', agent: v, agent_name: 'NatsStore put -> watchers', peer: 1000, peer_name: 'target (p99 1000 ms)', note }, 'lower');
    }
  } finally {
    for (const u of unwatch) u();
    await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
    await writer?.close().catch(() => undefined);
    await nats.stop();
  }
}
