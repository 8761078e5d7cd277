import * as fs from 'node:fs';

/** What the sink knows of one agent run (host, boot id). */
interface Boot {
  /** The lowest seq not yet stored or accounted for: everything below it is. */
  next: number;
  /** Stored seqs at or above next (they came ahead of a missing one). */
  readonly seen: Set<number>;
  /** Seqs a gap said will never come, at or above next. */
  readonly gone: Set<number>;
}

export interface Numbered {
  readonly bootId: string;
  readonly seq: number;
}

export interface GapRanges extends Numbered {
  readonly dropped: ReadonlyArray<{ readonly from: number; readonly to: number }>;
}

/**
 * The sink's record of what it has stored, per (host, boot id): it drops a
 * (boot, seq) it already has and acknowledges the highest seq up to which
 * everything is stored or was declared gone. A boot first seen starts at the
 * lowest seq it sends (what came before went to an earlier sink). Kept in a
 * file, if given, so that a restarted sink still drops duplicates.
 */
export class Ledger {
  private readonly boots = new Map<string, Boot>();

  constructor(private readonly file = '') {
    if (file === '' || !fs.existsSync(file)) return;
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, { next: number; seen: number[]; gone: number[] }>;
    for (const [k, b] of Object.entries(saved)) this.boots.set(k, { next: b.next, seen: new Set(b.seen), gone: new Set(b.gone) });
  }

  /**
   * Takes one batch: gaps first, then each item in the order given. Returns,
   * for each item, whether it is new, and the acknowledgement per boot id.
   */
  take(hostId: string, items: readonly Numbered[], gaps: readonly GapRanges[]): { fresh: boolean[]; acks: Array<{ bootId: string; seq: number }> } {
    const touched = new Set<string>();
    const boot = (bootId: string): Boot => {
      const key = `${hostId}/${bootId}`;
      touched.add(bootId);
      let b = this.boots.get(key);
      if (!b) {
        const lows = [...items.filter((i) => i.bootId === bootId).map((i) => i.seq), ...gaps.filter((g) => g.bootId === bootId).flatMap((g) => g.dropped.map((d) => d.from))];
        this.boots.set(key, (b = { next: Math.min(...lows), seen: new Set(), gone: new Set() }));
      }
      return b;
    };
    for (const g of gaps) {
      const b = boot(g.bootId);
      for (const { from, to } of g.dropped) for (let s = Math.max(from, b.next); s <= to; s++) b.gone.add(s);
    }
    const fresh = items.map((i) => {
      const b = boot(i.bootId);
      if (i.seq < b.next || b.seen.has(i.seq)) return false;
      b.seen.add(i.seq);
      return true;
    });
    const acks = [...touched].map((bootId) => {
      const b = boot(bootId);
      while (b.seen.has(b.next) || b.gone.has(b.next)) {
        b.seen.delete(b.next);
        b.gone.delete(b.next);
        b.next++;
      }
      return { bootId, seq: b.next - 1 };
    });
    this.save();
    return { fresh, acks };
  }

  private save(): void {
    if (this.file === '') return;
    const out: Record<string, { next: number; seen: number[]; gone: number[] }> = {};
    for (const [k, b] of this.boots) out[k] = { next: b.next, seen: [...b.seen], gone: [...b.gone] };
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(out));
    fs.renameSync(tmp, this.file);
  }
}
