// nftables through `nft -j`: one process per transaction (no maintained Node
// library speaks nf_tables netlink; Felix also drives the command). What the
// kernel has is read back as the same model compile() makes, with handles,
// and the difference becomes one atomic transaction.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HOOK_PRIORITY, type ChainModel, type Expr, type SetModel, type TableModel } from './compile';

export type Command = Record<string, unknown>;

/** What the kernel has of the agent's table: the model plus rule handles. */
export interface ActualTable {
  readonly sets: Map<string, SetModel>;
  readonly chains: Map<string, { rules: Array<{ key: string; handle: number; packets: number }> }>;
}

export class NftError extends Error {}

export class Nft {
  constructor(
    readonly family: 'inet',
    readonly table: string,
    private readonly bin = 'nft',
  ) {}

  /** Runs a transaction (all or nothing); returns nft's echo of it when echo is set. */
  async run(commands: readonly Command[], opts: { echo?: boolean } = {}): Promise<unknown> {
    if (commands.length === 0) return undefined;
    // nft reads "-" through /dev/stdin, which it cannot open on the socket Node gives a child: a private file instead.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-nft-'));
    const file = path.join(dir, 'transaction.json');
    try {
      fs.writeFileSync(file, JSON.stringify({ nftables: commands }), { mode: 0o600 });
      const out = await this.exec(opts.echo ? ['-j', '-e', '-a', '-f', file] : ['-j', '-f', file]);
      return out.trim() === '' ? undefined : JSON.parse(out);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /** The agent's table as it is, or undefined when there is none. */
  async read(): Promise<ActualTable | undefined> {
    let out: string;
    try {
      out = await this.exec(['-j', '-a', 'list', 'table', this.family, this.table]);
    } catch (err) {
      if (/No such file or directory/.test((err as Error).message)) return undefined;
      throw err;
    }
    const items = (JSON.parse(out) as { nftables: Array<Record<string, Record<string, unknown>>> }).nftables;
    const sets = new Map<string, SetModel>();
    const chains: ActualTable['chains'] = new Map();
    for (const item of items) {
      if (item.set) {
        const s = item.set as { name: string; type: SetModel['type']; comment?: string; elem?: unknown[] };
        sets.set(s.name, { type: s.type, comment: s.comment ?? '', elements: new Set((s.elem ?? []).map(String)) });
      } else if (item.chain) {
        chains.set(String(item.chain.name), { rules: [] });
      } else if (item.rule) {
        const r = item.rule as { chain: string; handle: number; comment?: string; expr?: Array<Record<string, { packets?: number }>> };
        const packets = r.expr?.find((e) => e.counter)?.counter?.packets ?? 0;
        chains.get(r.chain)?.rules.push({ key: r.comment ?? '', handle: r.handle, packets });
      }
    }
    return { sets, chains };
  }

  deleteTable(): Command {
    return { delete: { table: { family: this.family, name: this.table } } };
  }

  /**
   * The commands that turn actual into desired; [] when they are the same.
   * Order inside the one transaction: objects first, rules out before the
   * sets and chains they name go, new rules after what they name exists.
   */
  diff(desired: TableModel | undefined, actual: ActualTable | undefined): Command[] {
    if (!desired) return actual ? [this.deleteTable()] : [];
    const t = { family: this.family, table: this.table };
    const head: Command[] = [];
    const removeRules: Command[] = [];
    const elements: Command[] = [];
    const addRules: Command[] = [];
    const tail: Command[] = [];
    if (!actual) head.push({ add: { table: { family: this.family, name: this.table } } });
    for (const [name, s] of desired.sets) {
      const have = actual?.sets.get(name);
      if (have && have.type !== s.type) {
        // A set changes type only across agent versions: rebuilt under the same name is not possible in one step while rules name it.
        throw new NftError(`set ${name} has type ${have.type}, wanted ${s.type}: delete table ${this.family} ${this.table} by hand`);
      }
      if (!have) head.push({ add: { set: { ...t, name, type: s.type, comment: s.comment } } });
      const add = [...s.elements].filter((e) => !have?.elements.has(e));
      const del = have ? [...have.elements].filter((e) => !s.elements.has(e)) : [];
      if (del.length > 0) elements.push({ delete: { element: { ...t, name, elem: del } } });
      if (add.length > 0) elements.push({ add: { element: { ...t, name, elem: add } } });
    }
    for (const [name, c] of desired.chains) {
      const have = actual?.chains.get(name);
      if (!have) head.push({ add: { chain: chainObject(t, name, c) } });
      const rule = (r: { key: string; expr: readonly Expr[] }): Command => ({ add: { rule: { ...t, chain: name, comment: r.key, expr: r.expr } } });
      if (c.ordered) {
        // Small and fixed: rewritten whole when anything in it differs.
        const same = have !== undefined && have.rules.length === c.rules.length && have.rules.every((r, i) => r.key === c.rules[i]!.key);
        if (same) continue;
        if (have) removeRules.push({ flush: { chain: { ...t, name } } });
        addRules.push(...c.rules.map(rule));
        continue;
      }
      // Order-free: only the rules that differ go or come.
      const wanted = new Map(c.rules.map((r) => [r.key, r]));
      const seen = new Set<string>();
      for (const r of have?.rules ?? []) {
        if (wanted.has(r.key) && !seen.has(r.key)) seen.add(r.key);
        else removeRules.push({ delete: { rule: { ...t, chain: name, handle: r.handle } } });
      }
      for (const r of c.rules) if (!seen.has(r.key)) addRules.push(rule(r));
    }
    for (const [name, c] of actual?.chains ?? []) {
      if (desired.chains.has(name)) continue;
      if (c.rules.length > 0) removeRules.push({ flush: { chain: { ...t, name } } });
      tail.push({ delete: { chain: { ...t, name } } });
    }
    for (const name of actual?.sets.keys() ?? []) if (!desired.sets.has(name)) tail.push({ delete: { set: { ...t, name } } });
    return [...head, ...removeRules, ...elements, ...addRules, ...tail];
  }

  private exec(args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.on('error', (e) => reject(new NftError(`${this.bin}: ${e.message}`)));
      child.on('close', (code) => {
        if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
        else reject(new NftError(`${this.bin} ${args.join(' ')} exited with ${code}: ${Buffer.concat(err).toString('utf8').trim().slice(0, 2000)}`));
      });
    });
  }
}

function chainObject(t: { family: string; table: string }, name: string, c: ChainModel): Command {
  if (!c.hook) return { ...t, name };
  return { ...t, name, type: 'filter', hook: c.hook, prio: HOOK_PRIORITY, policy: 'accept' };
}
