import type { KvStore, StoreChange } from './store';

/**
 * Watchers of a single-process store: each change made through the store is
 * handed to every watcher of its key or prefix, after the current values
 * (as the cluster store does).
 */
export class LocalWatchers {
  private readonly watchers = new Set<{ prefix: string; fn: (c: StoreChange) => void }>();

  /** The current values are read from store after the watcher is registered, so no change falls between. */
  add(prefix: string, fn: (c: StoreChange) => void, store: Pick<KvStore, 'get' | 'list'>): () => void {
    const w = { prefix, fn };
    this.watchers.add(w);
    const current = prefix.endsWith('.') ? store.list(prefix) : store.get(prefix).then((v): Array<[string, string]> => (v === undefined ? [] : [[prefix, v]]));
    void current.then((all) => {
      for (const [key, value] of all) if (this.watchers.has(w)) fn({ key, value });
    });
    return () => this.watchers.delete(w);
  }

  notify(key: string, value: string | undefined): void {
    for (const w of this.watchers) if (matches(w.prefix, key)) w.fn({ key, value });
  }

  clear(): void {
    this.watchers.clear();
  }
}

/** A prefix ending in "." watches every key under it; anything else is one key. */
function matches(prefix: string, key: string): boolean {
  return prefix.endsWith('.') ? key.startsWith(prefix) : key === prefix;
}
