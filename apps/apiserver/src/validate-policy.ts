import { isIP } from 'node:net';
import { fail } from '@agent/drivers';
import { LEARNED_RULE_IDS, MAX_RULE_ID } from '@agent/option';
import { policyv1 } from '@agent/proto';
import { checkLabels, checkObjectId } from './validate';


const POLICY_LIMITS = { groups: 10_000, rules: 100_000, ports: 64 } as const;
const GROUP_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
const RESERVED_PEERS = new Set(['any', 'host']);
const PORT = /^(tcp|udp)\/(\d{1,5})(?:-(\d{1,5}))?$/;

/** The whole policy, every field checked; the first problem is named by its path. */
export function validatePolicy(p: policyv1.Policy): void {
  if (p.revision <= 0) fail('revision', 'required and positive');
  if (p.groups.length > POLICY_LIMITS.groups) fail('groups', `at most ${POLICY_LIMITS.groups}`);
  if (p.rules.length > POLICY_LIMITS.rules) fail('rules', `at most ${POLICY_LIMITS.rules}`);
  const groups = new Set<string>();
  p.groups.forEach((g, i) => {
    const at = `groups[${i}]`;
    if (!GROUP_NAME.test(g.name)) fail(`${at}.name`, 'letters, digits, "_", "." and "-", at most 63, starting with a letter or digit');
    if (RESERVED_PEERS.has(g.name)) fail(`${at}.name`, `"${g.name}" is reserved`);
    if (groups.has(g.name)) fail(`${at}.name`, `duplicate group ${JSON.stringify(g.name)}`);
    groups.add(g.name);
    if (Object.keys(g.selector).length === 0) fail(`${at}.selector`, 'at least one label (an empty selector would take every container)');
    checkLabels(`${at}.selector`, g.selector);
    if (!(g.mode in policyv1.Mode) || g.mode === policyv1.Mode.MODE_UNSPECIFIED || g.mode === policyv1.Mode.UNRECOGNIZED) fail(`${at}.mode`, 'one of MODE_DISCOVER, MODE_MONITOR, MODE_PROTECT');
  });
  const ids = new Set<number>();
  p.rules.forEach((r, i) => {
    const at = `rules[${i}]`;
    if (r.id <= 0) fail(`${at}.id`, 'required and positive');
    // The dataplane marks each connection with the id of the rule that allowed it (32 bits, the last one its own).
    if (r.id > MAX_RULE_ID) fail(`${at}.id`, `at most ${MAX_RULE_ID}`);
    if (r.learned !== r.id >= LEARNED_RULE_IDS) fail(`${at}.id`, r.learned ? `a learned rule has an id of at least ${LEARNED_RULE_IDS}` : `ids from ${LEARNED_RULE_IDS} up are for learned rules`);
    if (ids.has(r.id)) fail(`${at}.id`, `duplicate rule id ${r.id}`);
    ids.add(r.id);
    checkPeer(`${at}.from`, r.from, groups);
    checkPeer(`${at}.to`, r.to, groups);
    if (r.ports.length > POLICY_LIMITS.ports) fail(`${at}.ports`, `at most ${POLICY_LIMITS.ports}`);
    r.ports.forEach((port, k) => checkPort(`${at}.ports[${k}]`, port));
    if (r.action !== policyv1.Action.ACTION_ALLOW && r.action !== policyv1.Action.ACTION_DENY) fail(`${at}.action`, 'ACTION_ALLOW or ACTION_DENY');
  });
}

/** A group of this policy, "any", "host", or a CIDR. */
function checkPeer(field: string, peer: string, groups: ReadonlySet<string>): void {
  if (peer === '') fail(field, 'required: a group name, "any", "host" or a CIDR');
  if (RESERVED_PEERS.has(peer) || groups.has(peer)) return;
  if (peer.includes('/') || isIP(peer) !== 0) return checkCidr(field, peer);
  fail(field, `no group ${JSON.stringify(peer)} in this policy (nor "any", "host" or a CIDR)`);
}

function checkCidr(field: string, cidr: string): void {
  const [addr = '', len, ...rest] = cidr.split('/');
  const family = isIP(addr);
  if (family === 0 || rest.length > 0) fail(field, `not an address or CIDR: ${JSON.stringify(cidr)}`);
  if (len === undefined) return;
  const bits = Number(len);
  if (!/^\d{1,3}$/.test(len) || bits > (family === 4 ? 32 : 128)) fail(field, `bad prefix length in ${JSON.stringify(cidr)}`);
}

function checkPort(field: string, port: string): void {
  if (port === 'any') return;
  const m = PORT.exec(port);
  if (!m) fail(field, `expected "any", "tcp/N", "udp/N" or "tcp/N-M", got ${JSON.stringify(port.slice(0, 32))}`);
  const from = Number(m[2]);
  const to = m[3] === undefined ? from : Number(m[3]);
  if (from < 1 || to > 65535 || from > to) fail(field, `ports are 1..65535, low to high: ${JSON.stringify(port)}`);
}

/** ListFlows answers at most this many flows (the most recent). */
export const MAX_FLOWS_LISTED = 10_000;

/** WatchFlows (and ListFlows): an object id if any, known verdicts. */
export function validateFlowFilter(r: { objectId: string; verdicts: readonly policyv1.Verdict[] }): void {
  if (r.objectId !== '') checkObjectId('object_id', r.objectId);
  r.verdicts.forEach((v, i) => {
    if (v === policyv1.Verdict.VERDICT_UNSPECIFIED || policyv1.Verdict[v] === undefined || v === policyv1.Verdict.UNRECOGNIZED) fail(`verdicts[${i}]`, `unknown verdict ${v}`);
  });
}

export function validateListFlows(r: policyv1.ListFlowsRequest): void {
  validateFlowFilter(r);
  if (r.limit > MAX_FLOWS_LISTED) fail('limit', `at most ${MAX_FLOWS_LISTED}`);
}
