/**
 * A Map<number, V> kept in a plain object, for tables whose entries come and
 * go with each call (open http2 streams, calls in flight on the pipe).
 *
 * Why not a Map: measured on Node 20 (V8 11.3), once a Map that sees steady
 * set/delete has been moved to the old generation by a full GC, every
 * scavenge promotes every value that passed through the Map since the one
 * before, live or not, until the next full GC; and the full GCs this brings
 * fall under load again, so it does not stop. A gRPC server whose client
 * multiplexes 16 calls on one connection then promotes about 1.6 MB per
 * scavenge instead of about 36 KB, and its old generation is mark-compacted
 * about once a second (`bench/README.md`, the Get row). A plain object with
 * the same churn (V8 keeps its integer keys in a dictionary) promotes nothing
 * of it. `id-table.test.ts` measures both.
 *
 * Keys are non-negative integers (stream and call ids); iteration is in
 * ascending key order, not insertion order.
 */
export class IdTable<V> implements Map<number, V> {
  private entries_: Record<number, V> = Object.create(null) as Record<number, V>;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(id: number): V | undefined {
    return this.entries_[id];
  }

  has(id: number): boolean {
    return id in this.entries_;
  }

  set(id: number, value: V): this {
    if (!(id in this.entries_)) this.count++;
    this.entries_[id] = value;
    return this;
  }

  delete(id: number): boolean {
    if (!(id in this.entries_)) return false;
    delete this.entries_[id];
    this.count--;
    return true;
  }

  clear(): void {
    this.entries_ = Object.create(null) as Record<number, V>;
    this.count = 0;
  }

  forEach(fn: (value: V, id: number, table: Map<number, V>) => void, thisArg?: unknown): void {
    // A snapshot, as Map's forEach tolerates deletes while it runs (a destroyed stream leaves its table).
    for (const [id, value] of this.entries()) fn.call(thisArg, value, id, this);
  }

  *entries(): MapIterator<[number, V]> {
    for (const key of Object.keys(this.entries_)) {
      const id = Number(key);
      if (id in this.entries_) yield [id, this.entries_[id] as V];
    }
  }

  *keys(): MapIterator<number> {
    for (const [id] of this.entries()) yield id;
  }

  *values(): MapIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): MapIterator<[number, V]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return 'IdTable';
  }
}
