import { isIP } from 'node:net';
import { errorMessage, type Logger } from '@agent/grpc-kit';
import { LEARNED_RULE_IDS, MAX_RULE_ID } from '@agent/option';
import { policyv1 } from '@agent/proto';
import type { Records } from './records';

const { Action } = policyv1;

/** Rules one host keeps learning; beyond it, connections still pass (Discover) but are not learned. */
const MAX_LEARNED_PER_HOST = 10_000;

/**
 * Discover mode's memory: a connection no rule covered becomes an allow rule
 * between the groups of its ends, kept across policy changes (Discover ->
 * Protect keeps what was learned). Each agent records what it learned under
 * its own key (config.learned.<host>) and applies what every agent learned,
 * so the fleet shares it without two writers on one key. A learned rule
 * whose group the policy no longer has is dropped.
 */
export class LearnedRules {
  private readonly byHost = new Map<string, policyv1.Rule[]>();

  constructor(
    private readonly records: Records,
    private readonly hostId: string,
    private readonly log: Logger,
  ) {}

  /** A host's learned rules as the store has them now (this host's too: the store is the owner). Returns whether anything changed. */
  changed(host: string, value: string | undefined): boolean {
    const rules = parse(value, (why) => this.log.warn('learned rules unreadable; taken as none', { host, reason: why }));
    const was = this.byHost.get(host) ?? [];
    if (sameIds(was, rules)) return false;
    if (rules.length === 0) this.byHost.delete(host);
    else this.byHost.set(host, rules);
    return true;
  }

  /** Every learned rule that applies under this policy: its groups exist, no rule of the policy has its id; one per id. */
  effective(policy: policyv1.Policy): policyv1.Rule[] {
    const groups = new Set(policy.groups.map((g) => g.name));
    const ids = new Set(policy.rules.map((r) => r.id));
    const out: policyv1.Rule[] = [];
    for (const rules of this.byHost.values()) {
      for (const r of rules) {
        if (ids.has(r.id) || !applies(r, groups)) continue;
        ids.add(r.id);
        out.push(r);
      }
    }
    return out;
  }

  /**
   * Learns the rules these flows (Discover: no rule covered them) become,
   * when they are new; records this host's set (pruned of rules whose group
   * is gone) before they apply. Returns each flow's learned rule id (0: not
   * learnable, e.g. no port).
   */
  async learn(flows: readonly policyv1.Flow[], policy: policyv1.Policy): Promise<number[]> {
    const groups = new Set(policy.groups.map((g) => g.name));
    const known = new Map(this.effective(policy).map((r) => [r.id, r]));
    for (const r of policy.rules) known.set(r.id, r);
    const own = (this.byHost.get(this.hostId) ?? []).filter((r) => applies(r, groups));
    const ids: number[] = [];
    let added = 0;
    for (const f of flows) {
      const rule = ruleFor(f);
      if (!rule) {
        ids.push(0);
        continue;
      }
      const seen = known.get(rule.id);
      if (seen && !sameRule(seen, rule)) {
        this.log.debug('learned rule id taken by another rule; not learned', { id: rule.id, from: rule.from, to: rule.to });
        ids.push(0);
        continue;
      }
      ids.push(rule.id);
      if (seen || own.length >= MAX_LEARNED_PER_HOST) continue;
      known.set(rule.id, rule);
      own.push(rule);
      added++;
    }
    if (added > 0 || own.length !== (this.byHost.get(this.hostId) ?? []).length) {
      try {
        await this.records.putLearned(JSON.stringify(own.map((r) => policyv1.Rule.toJSON(r))));
        this.byHost.set(this.hostId, own);
        this.log.info('network rules learned', { added, total: own.length });
      } catch (err) {
        this.log.warn('learned rules not recorded; learned again on the next such connection', { reason: errorMessage(err) });
        return ids.map(() => 0);
      }
    }
    return ids;
  }
}

/**
 * The allow rule a connection no rule covered becomes: from the source's
 * group to the destination's, for its protocol and port. An end in no group
 * is named by its address ("host" for the host itself), so what was learned
 * for one container does not open the way for another. A protocol without
 * ports is not learned.
 */
export function ruleFor(f: policyv1.Flow): policyv1.Rule | undefined {
  if ((f.protocol !== 'tcp' && f.protocol !== 'udp') || f.dstPort === 0) return undefined;
  const from = peer(f.srcGroup, f.srcIp);
  const to = peer(f.dstGroup, f.dstIp);
  if (!from || !to) return undefined;
  const ports = [`${f.protocol}/${f.dstPort}`];
  return policyv1.Rule.fromPartial({ id: learnedId(`${from}>${to}>${ports[0]}`), from, to, ports, action: Action.ACTION_ALLOW, learned: true });
}

function peer(group: string, ip: string): string | undefined {
  if (group !== '') return group;
  const family = isIP(ip);
  return family === 4 ? `${ip}/32` : family === 6 ? `${ip}/128` : undefined;
}

/** The same connection learned on any agent gets the same id (FNV-1a of what the rule says, in the learned range). */
function learnedId(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return LEARNED_RULE_IDS + (h % (MAX_RULE_ID - LEARNED_RULE_IDS + 1));
}

/** A learned rule applies while the groups it names are in the policy (a CIDR or "host" always is). */
function applies(r: policyv1.Rule, groups: ReadonlySet<string>): boolean {
  const ok = (p: string): boolean => groups.has(p) || p === 'host' || p === 'any' || isIP(p.split('/')[0] ?? '') !== 0;
  return ok(r.from) && ok(r.to);
}

/** Whether two rules say the same (from, to, ports, action), whatever their ids, hits or flags. */
export function sameRule(a: policyv1.Rule, b: policyv1.Rule): boolean {
  return a.from === b.from && a.to === b.to && a.ports.join(',') === b.ports.join(',') && a.action === b.action;
}

function sameIds(a: readonly policyv1.Rule[], b: readonly policyv1.Rule[]): boolean {
  return a.length === b.length && a.every((r, i) => r.id === b[i]?.id);
}

function parse(value: string | undefined, warn: (why: string) => void): policyv1.Rule[] {
  if (value === undefined) return [];
  try {
    const list = JSON.parse(value) as unknown;
    if (!Array.isArray(list)) throw new Error('not a list');
    return list.map((r) => policyv1.Rule.fromJSON(r)).filter((r) => r.learned && r.id >= LEARNED_RULE_IDS && r.id <= MAX_RULE_ID);
  } catch (err) {
    warn(errorMessage(err));
    return [];
  }
}
