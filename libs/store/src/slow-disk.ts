// Whether the disk's syncs are slow enough that commits must leave the event
// loop's thread. One slow sync is a blip of a shared disk (a journal commit,
// a neighbour's flush) and says nothing of the next; a run of them, or one
// that stalls, does.

/** A sync this slow counts against the disk. */
export const SLOW_SYNC_MS = 4;
/** Of the last WINDOW syncs, this many slow ones make the disk slow. */
const WINDOW = 8;
const SLOW_IN_WINDOW = 4;
/** One sync this slow makes the disk slow at once. */
export const STALL_MS = 20;
/** How long the disk is then held slow. */
export const HOLD_MS = 10_000;

export class SlowDisk {
  private readonly recent = new Uint8Array(WINDOW);
  private at = 0;
  private slow = 0;
  private until = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** A sync on the event loop's thread took ms. */
  synced(ms: number): void {
    const s = ms >= SLOW_SYNC_MS ? 1 : 0;
    this.slow += s - this.recent[this.at]!;
    this.recent[this.at] = s;
    this.at = (this.at + 1) % WINDOW;
    if (ms >= STALL_MS || this.slow >= SLOW_IN_WINDOW) {
      this.until = this.now() + HOLD_MS;
      this.recent.fill(0);
      this.slow = 0;
    }
  }

  /** Whether commits should go to the writer thread now. */
  get held(): boolean {
    return this.now() < this.until;
  }
}
