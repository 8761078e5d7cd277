import { Driver as DriverNames } from '@agent/option';
import { BaseDriver, NO_CAPABILITIES, type Capabilities } from '../driver';
import { compile, SetName, type TableModel } from './compile';
import { Conntrack } from './conntrack';
import { Nft, type ActualTable, type Command } from './nft';
import type { Enforcing, NetworkState, ProgramResult } from './types';

export interface NetworkDriverOptions {
  /** The agent's own nftables table (inet family); it never touches another. */
  readonly table: string;
  /** NFLOG group the dataplane logs new connections to (the flow reader listens on it). */
  readonly logGroup: number;
  readonly nftPath?: string;
  /** The conntrack command, which cuts established connections ('conntrack'). */
  readonly conntrackPath?: string;
  /** How old the followed copy of the table may get before it is read from the kernel again (10 s). */
  readonly rereadMs?: number;
}

/**
 * The network driver: segmentation of containers on nftables, in a table of
 * the agent's own, hooked before Docker's chains. Each program() is one
 * atomic transaction holding only the difference between what the kernel has
 * and what is wanted; what the kernel has is read once and then followed
 * from the transactions' echo, and read again after any failure. After a
 * transaction, the established connections of newly quarantined endpoints
 * and of revoked rules are cut.
 */
export class NetworkDriver extends BaseDriver implements Enforcing {
  readonly name = DriverNames.Network;
  readonly capabilities: Capabilities = NO_CAPABILITIES;
  private readonly nft: Nft;
  private readonly conntrack: Conntrack;
  private actual: ActualTable | undefined;
  /** When the kernel's table was last read (0: never; the cache is not trusted). */
  private readAt = 0;

  constructor(private readonly opts: NetworkDriverOptions) {
    super();
    this.nft = new Nft('inet', opts.table, opts.nftPath);
    this.conntrack = new Conntrack(opts.conntrackPath);
  }

  async health(): Promise<void> {
    await this.nft.read();
  }

  async program(state: NetworkState): Promise<ProgramResult> {
    const desired = compile(state, this.opts.logGroup);
    const cached = this.readAt !== 0;
    let done: Transacted;
    try {
      done = await this.transact(desired);
    } catch (err) {
      // Nothing to enforce needs no nftables: a host without it runs everything else.
      if (!desired && /ENOENT/.test((err as Error).message)) return { changes: 0, present: false, cut: 0 };
      // The table may have been changed behind the agent's back (a handle gone): read it again, once.
      if (!cached) throw err;
      done = await this.transact(desired);
    }
    // Never throws (the caller logs a failure). A revoked rule's connections pass until their entries go: waited for.
    const cut = await this.conntrack.cut([], state.revoke ?? []);
    // A quarantined workload's packets are dropped already: its entries go after the answer.
    const quarantineCut = done.quarantined.length > 0 ? this.conntrack.cut(done.quarantined, []) : undefined;
    return { changes: done.changes, present: done.present, ...cut, ...(quarantineCut ? { quarantineCut } : {}) };
  }

  private async transact(desired: TableModel | undefined): Promise<Transacted> {
    // Someone else may flush or edit the table (an admin, a firewall reload): the kernel is read again now and then.
    if (this.readAt === 0 || Date.now() - this.readAt > (this.opts.rereadMs ?? 10_000)) {
      this.actual = await this.nft.read();
      this.readAt = Date.now();
    }
    const was = this.actual?.sets.get(SetName.quarantine)?.elements;
    const quarantined = [...(desired?.sets.get(SetName.quarantine)?.elements ?? [])].filter((ip) => !was?.has(ip));
    const commands = this.nft.diff(desired, this.actual);
    if (commands.length > 0) {
      try {
        // Only added rules need their handles echoed; a large echo overflows netlink (ENOBUFS, after the commit) and costs a full read.
        const echo = await this.nft.run(commands, { echo: commands.some((c) => (c.add as { rule?: unknown } | undefined)?.rule !== undefined) });
        this.actual = desired ? follow(this.actual, desired, commands, echo) : undefined;
      } catch (err) {
        this.readAt = 0;
        throw err;
      }
    }
    return { changes: commands.length, present: desired !== undefined, quarantined };
  }

  async ruleHits(): Promise<Map<number, number>> {
    const hits = new Map<number, number>();
    for (const c of (await this.nft.read())?.chains.values() ?? []) {
      for (const r of c.rules) {
        const m = /^r(\d+):/.exec(r.key);
        if (m) hits.set(Number(m[1]), (hits.get(Number(m[1])) ?? 0) + r.packets);
      }
    }
    return hits;
  }

  async clear(): Promise<void> {
    this.readAt = 0;
    if (await this.nft.read()) await this.nft.run([this.nft.deleteTable()]);
    this.actual = undefined;
  }
}

/** A transaction gone through, and the addresses it put in quarantine (whose connections are to be cut). */
interface Transacted {
  readonly changes: number;
  readonly present: boolean;
  readonly quarantined: readonly string[];
}

/** What the kernel has after a transaction went through: the rules kept, plus the added ones with the handles nft echoed. */
function follow(before: ActualTable | undefined, desired: TableModel, commands: readonly Command[], echo: unknown): ActualTable {
  const flushed = new Set<string>();
  const deleted = new Set<number>();
  for (const c of commands) {
    const del = c.delete as { rule?: { handle: number } } | undefined;
    const flush = c.flush as { chain?: { name: string } } | undefined;
    if (del?.rule) deleted.add(del.rule.handle);
    if (flush?.chain) flushed.add(flush.chain.name);
  }
  const chains: ActualTable['chains'] = new Map();
  for (const name of desired.chains.keys()) {
    const kept = flushed.has(name) ? [] : (before?.chains.get(name)?.rules ?? []).filter((r) => !deleted.has(r.handle));
    chains.set(name, { rules: [...kept] });
  }
  for (const item of (echo as { nftables?: Array<{ add?: { rule?: { chain: string; handle: number; comment?: string } } }> } | undefined)?.nftables ?? []) {
    const r = item.add?.rule;
    if (r) chains.get(r.chain)?.rules.push({ key: r.comment ?? '', handle: r.handle, packets: 0 });
  }
  return { sets: new Map(desired.sets), chains };
}
