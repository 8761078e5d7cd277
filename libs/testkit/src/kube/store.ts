// The fake's etcd: objects by resource, namespace and name, one global
// resourceVersion counter, and a bounded event log that watches resume from.
import type { KubeObject } from './json';
import type { Resource } from './resources';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  readonly rv: number;
  readonly type: EventType;
  readonly res: Resource;
  /** The object after the change (for DELETED: as it was, with the deletion's resourceVersion). */
  readonly object: KubeObject;
  /** The object before the change, so a watch with a selector sees it leave. */
  readonly old?: KubeObject;
}

export interface Stored {
  readonly res: Resource;
  readonly object: KubeObject;
}

const keyOf = (res: Resource, namespace: string | undefined, name: string): string => `${res.group}/${res.plural}/${namespace ?? ''}/${name}`;

export class Store {
  private rv = 0;
  private readonly objects = new Map<string, Stored>();
  private history: StoreEvent[] = [];
  /** Events at or below this resourceVersion are no longer kept. */
  private floor = 0;
  private readonly listeners = new Set<(e: StoreEvent) => void>();

  constructor(private readonly historyLimit: number) {}

  get resourceVersion(): string {
    return String(this.rv);
  }

  get(res: Resource, namespace: string | undefined, name: string): KubeObject | undefined {
    const s = this.objects.get(keyOf(res, res.namespaced ? namespace : undefined, name));
    return s && structuredClone(s.object);
  }

  /** Copies, in etcd's key order (namespace, then name). */
  list(res: Resource, namespace?: string): KubeObject[] {
    const out: KubeObject[] = [];
    for (const s of this.sorted()) if (s.res === res && (namespace === undefined || s.object.metadata.namespace === namespace)) out.push(structuredClone(s.object));
    return out;
  }

  /** Every object of every resource (copies). */
  all(): Stored[] {
    return this.sorted().map((s) => ({ res: s.res, object: structuredClone(s.object) }));
  }

  /** Stores obj under a new resourceVersion and tells the watches; returns the stored copy. */
  write(res: Resource, obj: KubeObject): KubeObject {
    const key = keyOf(res, obj.metadata.namespace, obj.metadata.name);
    const old = this.objects.get(key)?.object;
    const stored = structuredClone(obj);
    stored.metadata.resourceVersion = String(++this.rv);
    this.objects.set(key, { res, object: stored });
    this.emit({ rv: this.rv, type: old ? 'MODIFIED' : 'ADDED', res, object: stored, old });
    return structuredClone(stored);
  }

  remove(res: Resource, obj: KubeObject): KubeObject {
    const key = keyOf(res, obj.metadata.namespace, obj.metadata.name);
    const old = this.objects.get(key)?.object;
    if (!old) return obj;
    this.objects.delete(key);
    const gone = structuredClone(old);
    gone.metadata.resourceVersion = String(++this.rv);
    this.emit({ rv: this.rv, type: 'DELETED', res, object: gone, old });
    return structuredClone(gone);
  }

  /** The events after rv, or undefined when some of them are no longer kept (410 Gone). */
  since(rv: number): StoreEvent[] | undefined {
    if (rv < this.floor) return undefined;
    return this.history.filter((e) => e.rv > rv);
  }

  /** The oldest resourceVersion a watch can still start from. */
  get oldest(): number {
    return this.floor;
  }

  /** Forgets the event history, as etcd compaction does. */
  compact(): void {
    this.history = [];
    this.floor = this.rv;
  }

  subscribe(fn: (e: StoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(e: StoreEvent): void {
    this.history.push(e);
    if (this.history.length > this.historyLimit) {
      const dropped = this.history.splice(0, this.history.length - this.historyLimit);
      this.floor = dropped[dropped.length - 1]?.rv ?? this.floor;
    }
    for (const fn of this.listeners) fn(e);
  }

  private sorted(): Stored[] {
    return [...this.objects.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, s]) => s);
  }
}
