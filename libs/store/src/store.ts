/** A change seen by a watcher: the key and its new value, or undefined when deleted. */
export interface StoreChange {
  readonly key: string;
  readonly value: string | undefined;
}

/**
 * The state store. Keys are dotted names (workloads.<host>.<object_id>, ...);
 * values are JSON text. One interface, several backends: the embedded one
 * here, a cluster one later.
 */
export interface KvStore {
  put(key: string, value: string): Promise<void>;
  /**
   * Puts value only if the key holds expected now (undefined: absent), as
   * one step against every other writer of the store (the fleet's agents on
   * NATS); resolves false, writing nothing, when it holds something else.
   */
  putIf(key: string, value: string, expected: string | undefined): Promise<boolean>;
  get(key: string): Promise<string | undefined>;
  delete(key: string): Promise<void>;
  /**
   * Puts (a value) and deletes (undefined) several keys as one write where the
   * backend can (the embedded store: one transaction, all or none, one sync);
   * the cluster store writes each key on its own, in order.
   */
  apply(changes: readonly StoreChange[]): Promise<void>;
  /** Every key that starts with prefix, with its value. */
  list(prefix: string): Promise<Array<[string, string]>>;
  /**
   * Calls fn on every change under prefix (a key, or a prefix ending in "."):
   * the current values first where the backend can, then each change.
   * Returns the unsubscribe.
   */
  watch(prefix: string, fn: (change: StoreChange) => void): () => void;
  /** Resolves while the store is reachable (health). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Keys, named after the seed's cluster keys. */
/** apply() for a backend without transactions over keys: each change on its own, in order. */
export async function applyEach(store: Pick<KvStore, 'put' | 'delete'>, changes: readonly StoreChange[]): Promise<void> {
  for (const c of changes) await (c.value === undefined ? store.delete(c.key) : store.put(c.key, c.value));
}

export const Keys = {
  workload: (host: string, objectId: string): string => `workloads.${host}.${objectId}`,
  workloads: (host: string): string => `workloads.${host}.`,
  host: (host: string): string => `hosts.${host}`,
  hosts: 'hosts.',
  agentConfig: (host: string): string => `config.agents.${host}`,
  network: 'config.network',
  /** The network rules an agent learned (Discover): each agent writes its own, all read them all. */
  learned: (host: string): string => `config.learned.${host}`,
  learnedAll: 'config.learned.',
  nodeRules: (host: string): string => `config.nodes.${host}.rules`,
  stats: (host: string): string => `stats.${host}`,
  event: (host: string, eventId: string): string => `events.${host}.${eventId}`,
  events: (host: string): string => `events.${host}.`,
} as const;

/** Errno names that mean "no room": the caller may retry once space is freed. */
const EXHAUSTED = new Set(['ENOSPC', 'EDQUOT', 'ENOMEM', 'EFBIG', 'MDB_MAP_FULL']);

/**
 * A write the store could not make. code is the cause's errno name (ENOSPC,
 * EROFS, EIO…); exhausted says whether it is a lack of room.
 */
export class StoreWriteError extends Error {
  readonly exhausted: boolean;
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreWriteError';
    this.exhausted = EXHAUSTED.has(code);
  }
}
