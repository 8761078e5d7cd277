import { errorMessage, type Logger } from '@agent/grpc-kit';
import { macFor } from '@agent/drivers';
import { findKind, KINDS } from '@agent/kinds';
import { type internalv1, policyv1, v1 } from '@agent/proto';
import { metrics } from '@agent/telemetry';
import { sameRule, type LearnedRules } from './learning';
import type { ObjectRecord, ObjectTable } from './objects';
import type { Peers } from './peers';

const { State, Enforcement } = v1;
const { Mode, Verdict } = policyv1;

/** The mode a verdict comes from (an allowed flow's is its ends'). */
const VERDICT_MODE: Partial<Record<policyv1.Verdict, policyv1.Mode>> = {
  [Verdict.VERDICT_DENIED]: Mode.MODE_PROTECT,
  [Verdict.VERDICT_VIOLATION]: Mode.MODE_MONITOR,
  [Verdict.VERDICT_LEARNED]: Mode.MODE_DISCOVER,
};

const RETRY_MS = 1_000;

/**
 * The policy engine: which containers the policy's groups select, in which
 * mode, and the dataplane state that follows, reconciled through the
 * manager's network driver on the system queue. Any change of an object that
 * matters to the network (labels, address, alive or not) brings a reconcile;
 * reconciles asked for while one waits are the same reconcile.
 */
export class Segmentation {
  private policy = policyv1.Policy.fromPartial({});
  private started = false;
  private queued: Promise<void> | undefined;
  private retry: NodeJS.Timeout | undefined;
  /** Per object, the endpoint the last reconcile programmed ("null": none); a change that leaves it as it was needs no reconcile. */
  private readonly programmed = new Map<string, string>();
  /** Rules removed or changed with revoke_established, whose connections the next reconcile cuts. */
  private readonly revoke = new Set<number>();
  /** Told after each reconcile whether the dataplane has anything (the flow log is read while it has). */
  onDataplane: (present: boolean) => void = () => undefined;

  constructor(
    private readonly objects: ObjectTable,
    private readonly peers: Peers,
    private readonly learned: LearnedRules,
    private readonly system: (name: string, fn: () => Promise<void>) => Promise<void>,
    private readonly opts: { readonly hostId: string },
    private readonly log: Logger,
  ) {
    objects.onAnyChange((rec) => void this.refresh(rec));
  }

  /** After recovery: from here on the dataplane follows the objects (before, it keeps what the kernel has). */
  async start(policy: policyv1.Policy): Promise<void> {
    this.policy = policy;
    this.started = true;
    await this.sync();
  }

  stop(): void {
    this.started = false;
    clearTimeout(this.retry);
  }

  /** A new policy (applied here, or by another agent of the fleet). */
  setPolicy(p: policyv1.Policy, opts: { force?: boolean } = {}): Promise<void> {
    // Watches and pulls may bring an older revision late; a policy removed from the store is taken as none.
    if (p.revision < this.policy.revision && !opts.force) return Promise.resolve();
    const before = this.rules();
    this.policy = p;
    this.revokeChanged(before);
    return this.sync();
  }

  /** Another agent of the fleet (or this one) learned rules: they apply here too. */
  learnedChanged(host: string, value: string | undefined): void {
    const before = this.rules();
    if (!this.learned.changed(host, value)) return;
    this.revokeChanged(before);
    void this.sync();
  }

  /** The rules in force: the policy's, then what Discover learned (GetPolicy shows them). */
  rules(): policyv1.Rule[] {
    return [...this.policy.rules, ...this.learned.effective(this.policy)];
  }

  private revokeChanged(before: readonly policyv1.Rule[]): void {
    const now = new Map(this.rules().map((r) => [r.id, r]));
    for (const r of before) {
      const n = now.get(r.id);
      if (r.revokeEstablished && (!n || !sameRule(n, r))) this.revoke.add(r.id);
    }
  }

  /**
   * Flows as the dataplane logged them, their ends named (object, group,
   * "host"), with the mode that decided; those Discover passed become
   * learned rules, which the next reconcile programs.
   */
  async describe(logged: readonly internalv1.LoggedFlow[]): Promise<policyv1.Flow[]> {
    const byIp = new Map<string, v1.Object>();
    for (const { object: o } of this.objects.all()) {
      if (o.ip !== '' && segmentable(o) && o.state !== State.STATE_DELETED) byIp.set(o.ip, o);
    }
    const flows = logged.map((l) => this.named(l, byIp));
    const discovered = flows.filter((f) => f.verdict === Verdict.VERDICT_LEARNED);
    if (discovered.length > 0) {
      let ids: number[] = [];
      await this.system('network learn', async () => {
        ids = await this.learned.learn(discovered, this.policy);
      });
      discovered.forEach((f, i) => (f.ruleId = ids[i] ?? 0));
      if (ids.some((id) => id > 0)) void this.sync();
    }
    return flows;
  }

  private named(l: internalv1.LoggedFlow, byIp: ReadonlyMap<string, v1.Object>): policyv1.Flow {
    const f = policyv1.Flow.fromPartial({ ...l.flow, hostId: this.opts.hostId });
    const src = byIp.get(f.srcIp);
    const dst = byIp.get(f.dstIp);
    const sel = (o: v1.Object | undefined): { groups: string[]; mode: policyv1.Mode } => (o?.spec ? this.selection(o.spec.labels) : { groups: [], mode: Mode.MODE_UNSPECIFIED });
    const s = l.path === 'out' ? undefined : sel(src);
    const d = l.path === 'in' ? undefined : sel(dst);
    f.srcObjectId = src?.objectId ?? '';
    f.dstObjectId = dst?.objectId ?? '';
    f.srcGroup = s ? (s.groups[0] ?? '') : 'host';
    f.dstGroup = d ? (d.groups[0] ?? '') : 'host';
    f.mode = VERDICT_MODE[f.verdict] ?? Math.max(Mode.MODE_UNSPECIFIED, s?.mode ?? 0, d?.mode ?? 0);
    return f;
  }

  /** The groups that select these labels, and the strictest of their modes (UNSPECIFIED: none selects them). */
  selection(labels: Readonly<Record<string, string>>): { groups: string[]; mode: policyv1.Mode } {
    const groups = this.policy.groups.filter((g) => Object.entries(g.selector).every(([k, v]) => labels[k] === v));
    // Modes are numbered in order of strictness.
    return { groups: groups.map((g) => g.name), mode: Math.max(Mode.MODE_UNSPECIFIED, ...groups.map((g) => g.mode)) };
  }

  /**
   * A container the agent is about to start: when its policy forbids by
   * default, the dataplane holds its MAC (fixed from its object id) before
   * it exists. Throws when that cannot be done: better not started than
   * unguarded.
   */
  async beforeStart(rec: ObjectRecord): Promise<void> {
    if (!segmentable(rec.object) || !rec.object.spec) return;
    if (this.selection(rec.object.spec.labels).mode !== Mode.MODE_PROTECT && !rec.object.quarantined) return;
    await this.sync();
    if (rec.object.enforcement !== Enforcement.ENFORCEMENT_PENDING) throw new Error(`network policy could not hold the container before its start: ${rec.object.lastError || 'dataplane refused'}`);
  }

  /** A reconcile when the object is not what the dataplane was last given of it (its address is new, its labels changed, it stopped). */
  refresh(rec: ObjectRecord): Promise<void> {
    if (!this.started || this.programmed.get(rec.object.objectId) === endpointKey(this.endpoint(rec))) return Promise.resolve();
    return this.sync();
  }

  /** A reconcile that starts after this call; one already waiting to start is shared. */
  sync(): Promise<void> {
    if (!this.started) return Promise.resolve();
    if (this.queued) return this.queued;
    const run = this.system('network reconcile', async () => {
      this.queued = undefined;
      await this.reconcile();
    });
    this.queued = run;
    return run;
  }

  private async reconcile(): Promise<void> {
    const policy = this.policy;
    const members: Array<{ rec: ObjectRecord; endpoint: internalv1.NetworkEndpoint }> = [];
    const others: ObjectRecord[] = [];
    for (const rec of this.objects.all()) {
      const endpoint = this.endpoint(rec);
      if (endpoint) members.push({ rec, endpoint });
      else if (rec.object.enforcement !== Enforcement.ENFORCEMENT_UNSPECIFIED || rec.object.groups.length > 0) others.push(rec);
      this.programmed.set(rec.object.objectId, endpointKey(endpoint));
    }
    const revoke = [...this.revoke];
    const state: internalv1.NetworkState = { endpoints: members.map((m) => m.endpoint), groups: policy.groups.map((g) => g.name), rules: this.rules(), revoke };
    let failure: string | undefined;
    const timer = metrics.policyProgram.startTimer();
    try {
      const r = await this.peers.manager.call('programNetwork', state, { timeoutMs: 30_000 });
      timer({ outcome: 'ok' });
      for (const id of revoke) this.revoke.delete(id);
      this.onDataplane(r.present);
    } catch (err) {
      timer({ outcome: 'failed' });
      failure = errorMessage(err);
      this.log.warn('network policy not programmed; retrying', { reason: failure, endpoints: state.endpoints.length, rules: state.rules.length });
      clearTimeout(this.retry);
      this.retry = setTimeout(() => void this.sync(), RETRY_MS);
      this.retry.unref();
    }
    const commits: Array<Promise<void>> = [];
    for (const { rec, endpoint } of members) {
      const enforcement = failure !== undefined ? Enforcement.ENFORCEMENT_FAILED : endpoint.pending || endpoint.ip === '' ? Enforcement.ENFORCEMENT_PENDING : Enforcement.ENFORCEMENT_ENFORCED;
      commits.push(this.record(rec, { groups: endpoint.groups, enforcement, policyRevision: failure === undefined ? policy.revision : rec.object.policyRevision }));
    }
    for (const rec of others) commits.push(this.record(rec, { groups: [], enforcement: Enforcement.ENFORCEMENT_UNSPECIFIED, policyRevision: 0 }));
    await Promise.all(commits);
  }

  /** What the dataplane must know of an object: a live container some group selects, or one held, quarantined. */
  private endpoint(rec: ObjectRecord): internalv1.NetworkEndpoint | undefined {
    const { object } = rec;
    if (!segmentable(object) || !object.spec) return undefined;
    if (object.state !== State.STATE_PENDING && object.state !== State.STATE_RUNNING) return undefined;
    if (rec.deleteRequested) return undefined;
    const { groups, mode } = this.selection(object.spec.labels);
    if (mode === Mode.MODE_UNSPECIFIED && !object.quarantined) return undefined;
    const { ip } = object;
    const created = object.origin === v1.Origin.ORIGIN_CREATED;
    const mac = rec.runtime?.mac || (created ? macFor(object.objectId) : '');
    // Created, not started yet (or its address not known): held until it is, if its policy forbids by default.
    const pending = ip === '' && mac !== '' && (mode === Mode.MODE_PROTECT || object.quarantined);
    // In no group (only quarantined): a mode the dataplane does not read for it.
    return { objectId: object.objectId, ip, mac, groups, mode: mode || Mode.MODE_DISCOVER, pending, quarantined: object.quarantined };
  }

  /** The object's network fields (its ip is the runtime's, set with it). */
  private async record(rec: ObjectRecord, n: { groups: string[]; enforcement: v1.Enforcement; policyRevision: number }): Promise<void> {
    const o = rec.object;
    if (o.enforcement === n.enforcement && o.policyRevision === n.policyRevision && o.groups.join('\n') === n.groups.join('\n')) return;
    Object.assign(o, n);
    await this.objects.commit(rec).catch((err: unknown) => this.log.warn('network state of object not recorded', { objectId: o.objectId, reason: errorMessage(err) }));
  }
}

/** An endpoint as the reconcile compares it. */
function endpointKey(e: internalv1.NetworkEndpoint | undefined): string {
  return JSON.stringify(e ?? null);
}

/** Objects whose kind's workloads have an address of their own (containers) are segmented; others are not. */
export function segmentable(object: v1.Object): boolean {
  return findKind(object.spec?.kind)?.capabilities.network === true;
}

/** The kinds that are segmented, for messages. */
export function segmentedKinds(): string {
  return KINDS.filter((r) => r.capabilities.network).map((r) => v1.Kind[r.kind]).join(', ');
}
