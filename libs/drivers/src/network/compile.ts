// Desired network state -> the agent's nftables table, as data (nft's JSON
// expressions). Pure: the same state gives the same model, byte for byte, so
// a reconcile can tell what changed by comparing rule keys (as Felix's rule
// hashes do) and set elements.
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { NO_RULE_MARK } from '@agent/option';
import { LogVerdict, formatLogPrefix, type EnforcementMode, type LogVerdictCode, type NetPath, type NetRule, type NetworkState } from './types';

export type Expr = Record<string, unknown>;

export interface SetModel {
  readonly type: 'ipv4_addr' | 'ether_addr';
  readonly comment: string;
  readonly elements: ReadonlySet<string>;
}

export interface RuleModel {
  /** "<tag>:<hash of expr>": what a rule is, for the diff; also its nft comment. */
  readonly key: string;
  readonly expr: readonly Expr[];
}

export interface ChainModel {
  readonly hook?: 'forward' | 'input' | 'output';
  readonly rules: readonly RuleModel[];
  /** Order matters (flushed and rewritten when it differs) or not (rules added and deleted one by one). */
  readonly ordered: boolean;
}

export interface TableModel {
  readonly sets: ReadonlyMap<string, SetModel>;
  readonly chains: ReadonlyMap<string, ChainModel>;
}

/** Before Docker's filter chains (priority 0), so what is dropped here never reaches them. */
export const HOOK_PRIORITY = -10;

/** The three places traffic of a container passes: to another container or out (forward), to the host (input), from the host (output). */
const PATHS: readonly Path[] = [
  { path: 'fwd', hook: 'forward', src: true, dst: true },
  { path: 'in', hook: 'input', src: true, dst: false },
  { path: 'out', hook: 'output', src: false, dst: true },
];
interface Path { readonly path: NetPath; readonly hook: 'forward' | 'input' | 'output'; readonly src: boolean; readonly dst: boolean }

export const SetName = {
  members: 'members',
  pending: 'pending',
  quarantine: 'quarantine',
  mode: (m: EnforcementMode): string => `mode_${m}`,
  group: (name: string): string => `g_${createHash('sha1').update(name).digest('hex').slice(0, 16)}`,
} as const;

const ip = (side: 'saddr' | 'daddr'): Expr => ({ payload: { protocol: 'ip', field: side } });
const ether = (side: 'saddr' | 'daddr'): Expr => ({ payload: { protocol: 'ether', field: side } });
const match = (left: Expr, right: unknown): Expr => ({ match: { op: '==', left, right } });
const inSet = (left: Expr, set: string): Expr => match(left, `@${set}`);
const counter: Expr = { counter: null };
const accept: Expr = { accept: null };
const drop: Expr = { drop: null };
const jump = (chain: string): Expr => ({ jump: { target: chain } });
const setMark = (mark: number): Expr => ({ mangle: { key: { ct: { key: 'mark' } }, value: mark } });
const goTo = (chain: string): Expr => ({ goto: { target: chain } });
// Headers are all a flow needs: the kernel would copy up to 64 KiB of each packet otherwise.
const log = (group: number, verdict: LogVerdictCode, ruleId: number, p: Path): Expr => ({ log: { prefix: formatLogPrefix({ verdict, ruleId, path: p.path }), group, snaplen: 64 } });

function rule(tag: string, expr: Expr[]): RuleModel {
  const hash = createHash('sha1').update(JSON.stringify(expr)).digest('hex').slice(0, 16);
  return { key: `${tag}:${hash}`, expr };
}

/** The table that enforces state; undefined when there is nothing to enforce (the table goes). */
export function compile(state: NetworkState, logGroup: number): TableModel | undefined {
  const segmented = state.endpoints.filter((e) => e.groups.length > 0 || e.pending || e.quarantined);
  if (segmented.length === 0) return undefined;
  const groups = new Set(state.groups);
  const sets = new Map<string, SetModel>();
  const addSet = (name: string, type: SetModel['type'], comment: string, elements: Iterable<string>): void => {
    sets.set(name, { type, comment, elements: new Set(elements) });
  };
  const withIp = segmented.filter((e) => e.ip !== undefined && isIP(e.ip) === 4);
  addSet(SetName.members, 'ipv4_addr', 'segmented workloads', withIp.filter((e) => e.groups.length > 0).map((e) => e.ip!));
  for (const m of ['discover', 'monitor', 'protect'] as const) addSet(SetName.mode(m), 'ipv4_addr', `workloads in ${m} mode`, withIp.filter((e) => e.groups.length > 0 && e.mode === m).map((e) => e.ip!));
  addSet(SetName.pending, 'ether_addr', 'started, address not known yet: dropped', segmented.filter((e) => e.pending && e.mac).map((e) => e.mac!.toLowerCase()));
  addSet(SetName.quarantine, 'ipv4_addr', 'quarantined: dropped', withIp.filter((e) => e.quarantined).map((e) => e.ip!));
  for (const g of groups) addSet(SetName.group(g), 'ipv4_addr', g, withIp.filter((e) => e.groups.includes(g)).map((e) => e.ip!));

  const chains = new Map<string, ChainModel>();
  for (const p of PATHS) {
    chains.set(p.hook, { hook: p.hook, ordered: true, rules: baseRules(p) });
    chains.set(`policy_${p.path}`, { ordered: true, rules: [rule('deny', [jump(`deny_${p.path}`)]), rule('allow', [jump(`allow_${p.path}`)]), rule('nomatch', [goTo(`nomatch_${p.path}`)])] });
    chains.set(`nomatch_${p.path}`, { ordered: true, rules: noMatchRules(p, logGroup) });
    const deny: RuleModel[] = [];
    const allow: RuleModel[] = [];
    for (const r of state.rules) {
      for (const m of ruleMatches(r, p, groups)) (r.action === 'deny' ? deny : allow).push(...verdictRules(r, p, m, logGroup));
    }
    chains.set(`deny_${p.path}`, { ordered: false, rules: deny });
    chains.set(`allow_${p.path}`, { ordered: false, rules: allow });
  }
  return { sets, chains };
}

/** The hooked chain: pending and quarantined dropped, established passed, then policy for traffic of members. */
function baseRules(p: Path): RuleModel[] {
  const out: RuleModel[] = [];
  // Only packets that came through a bridge or an interface carry a MAC: not on output.
  if (p.src) out.push(rule('pending', [inSet(ether('saddr'), SetName.pending), counter, drop]));
  if (p.dst && p.hook === 'forward') out.push(rule('pending', [inSet(ether('daddr'), SetName.pending), counter, drop]));
  if (p.src) out.push(rule('quarantine', [inSet(ip('saddr'), SetName.quarantine), counter, drop]));
  if (p.dst) out.push(rule('quarantine', [inSet(ip('daddr'), SetName.quarantine), counter, drop]));
  // "in": a flags test; "==" would want both bits at once and never match.
  // Only what the policy passed carries a mark. An entry the kernel picked up
  // mid-stream (nf_conntrack_tcp_loose), after revoke cut the one a rule had
  // marked, is established without ever having met the policy: it does now.
  out.push(rule('established', [{ match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, { match: { op: '!=', left: { ct: { key: 'mark' } }, right: 0 } }, accept]));
  if (p.src) out.push(rule('members', [inSet(ip('saddr'), SetName.members), goTo(`policy_${p.path}`)]));
  if (p.dst) out.push(rule('members', [inSet(ip('daddr'), SetName.members), goTo(`policy_${p.path}`)]));
  return out;
}

/**
 * No rule covered the connection: the strictest mode of its two ends
 * decides. Protect drops it, Monitor passes it as a violation, Discover
 * passes it as something to learn.
 */
function noMatchRules(p: Path, logGroup: number): RuleModel[] {
  const out: RuleModel[] = [];
  for (const [set, verdict, end] of [
    [SetName.mode('protect'), LogVerdict.Denied, drop],
    [SetName.mode('monitor'), LogVerdict.Violation, accept],
  ] as const) {
    const passed = end === accept ? [setMark(NO_RULE_MARK)] : [];
    if (p.src) out.push(rule('nomatch', [inSet(ip('saddr'), set), counter, ...passed, log(logGroup, verdict, 0, p), end]));
    if (p.dst) out.push(rule('nomatch', [inSet(ip('daddr'), set), counter, ...passed, log(logGroup, verdict, 0, p), end]));
  }
  out.push(rule('nomatch', [counter, setMark(NO_RULE_MARK), log(logGroup, LogVerdict.Learned, 0, p), accept]));
  return out;
}

/**
 * An allow rule passes the connection and marks it with the rule id (so
 * revoking the rule can cut what it allowed). A deny rule drops it where
 * either end is protected, and passes it as a violation elsewhere (marked as
 * passed by no rule: revoking a deny rule cuts nothing).
 */
function verdictRules(r: NetRule, p: Path, m: Expr[], logGroup: number): RuleModel[] {
  const tag = `r${r.id}`;
  if (r.action === 'allow') return [rule(tag, [...m, counter, setMark(r.id), log(logGroup, LogVerdict.Allowed, r.id, p), accept])];
  const out: RuleModel[] = [];
  if (p.src) out.push(rule(tag, [...m, inSet(ip('saddr'), SetName.mode('protect')), counter, log(logGroup, LogVerdict.Denied, r.id, p), drop]));
  if (p.dst) out.push(rule(tag, [...m, inSet(ip('daddr'), SetName.mode('protect')), counter, log(logGroup, LogVerdict.Denied, r.id, p), drop]));
  out.push(rule(tag, [...m, counter, setMark(NO_RULE_MARK), log(logGroup, LogVerdict.Violation, r.id, p), accept]));
  return out;
}

/**
 * The matches of a rule on one path, one list per protocol it names; none
 * when the rule cannot apply there ("host" is the host's own end: only input
 * and output; a group is containers).
 */
function ruleMatches(r: NetRule, p: Path, groups: ReadonlySet<string>): Expr[][] {
  const from = peerMatch(r.from, 'saddr', p.src, groups);
  const to = peerMatch(r.to, 'daddr', p.dst, groups);
  if (from === undefined || to === undefined) return [];
  const base = [...from, ...to];
  const ports = portMatches(r.ports);
  return ports.length === 0 ? [base] : ports.map((pm) => [...base, ...pm]);
}

/** Matches for one end: [] = anything, undefined = this end cannot be that peer on this path. */
function peerMatch(peer: string, side: 'saddr' | 'daddr', isWorkloadEnd: boolean, groups: ReadonlySet<string>): Expr[] | undefined {
  if (peer === 'any') return [];
  if (peer === 'host') return isWorkloadEnd ? undefined : [];
  if (groups.has(peer)) return isWorkloadEnd ? [inSet(ip(side), SetName.group(peer))] : undefined;
  // An address or CIDR: on the host's end it is the host's own address (a rule may name it).
  const [addr = '', len] = peer.split('/');
  const family = isIP(addr) === 6 ? 'ip6' : 'ip';
  const right = len === undefined ? addr : { prefix: { addr, len: Number(len) } };
  return [match({ payload: { protocol: family, field: side } }, right)];
}

/** One match per protocol named; [] when any port of any protocol goes. */
function portMatches(ports: readonly string[]): Expr[][] {
  if (ports.length === 0 || ports.includes('any')) return [];
  const by = new Map<string, unknown[]>();
  for (const port of ports) {
    const [proto = '', range = ''] = port.split('/');
    const [lo, hi] = range.split('-').map(Number);
    const value = hi === undefined || hi === lo ? lo : { range: [lo, hi] };
    by.set(proto, [...(by.get(proto) ?? []), value]);
  }
  return [...by.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([proto, values]) => [match({ payload: { protocol: proto, field: 'dport' } }, values.length === 1 ? values[0] : { set: values })]);
}
