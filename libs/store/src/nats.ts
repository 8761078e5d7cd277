import { connect, type KV, type NatsConnection, type QueuedIterator, type KvEntry } from 'nats';
import { applyEach, type KvStore, type StoreChange } from './store';

const enc = new TextEncoder();
/** JetStream's "wrong last sequence": the key changed after it was read. */
const WRONG_LAST_SEQUENCE = 10071;

function writtenMeanwhile(err: unknown): boolean {
  const e = err as { api_error?: { err_code?: number }; message?: string } | undefined;
  return e?.api_error?.err_code === WRONG_LAST_SEQUENCE || /wrong last sequence|key exists/i.test(e?.message ?? '');
}
const dec = new TextDecoder();

/**
 * A connection to the cluster's NATS servers (AGENT_CLUSTER_URL:
 * nats://host:port[,...]) that reconnects for ever once up: the store's, and
 * any other client of the same cluster (the reporter's flow stream).
 */
export function connectNats(url: string, name?: string): Promise<NatsConnection> {
  return connect({ servers: url.split(','), name, maxReconnectAttempts: -1, reconnectTimeWait: 500, timeout: 5_000 });
}

/**
 * The cluster store: a NATS JetStream key-value bucket shared by a fleet of
 * agents. Replication and consistency are JetStream's, not ours. Keys are
 * the same dotted names as in the embedded store; a watch on a prefix gets
 * the current values first, then every change made by any agent.
 */
export class NatsStore implements KvStore {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly kv: KV,
  ) {}

  static async open(url: string, bucket = 'agent', name?: string): Promise<NatsStore> {
    const nc = await connectNats(url, name);
    const kv = await nc.jetstream().views.kv(bucket, { history: 1 });
    return new NatsStore(nc, kv);
  }

  async put(key: string, value: string): Promise<void> {
    await this.kv.put(key, enc.encode(value));
  }

  /** On the entry's revision: JetStream refuses the write if any agent wrote the key since it was read. */
  async putIf(key: string, value: string, expected: string | undefined): Promise<boolean> {
    const e = await this.kv.get(key);
    const current = e && e.operation === 'PUT' ? dec.decode(e.value) : undefined;
    if (current !== expected) return false;
    try {
      if (e) await this.kv.update(key, enc.encode(value), e.revision);
      else await this.kv.create(key, enc.encode(value));
      return true;
    } catch (err) {
      if (writtenMeanwhile(err)) return false;
      throw err;
    }
  }

  async get(key: string): Promise<string | undefined> {
    const e = await this.kv.get(key);
    return e && e.operation === 'PUT' ? dec.decode(e.value) : undefined;
  }

  async delete(key: string): Promise<void> {
    await this.kv.delete(key);
  }

  /** JetStream's key-value bucket has no transaction over keys: each is written on its own, in order. */
  async apply(changes: readonly StoreChange[]): Promise<void> {
    await applyEach(this, changes);
  }

  async list(prefix: string): Promise<Array<[string, string]>> {
    const keys: string[] = [];
    const it = await this.kv.keys(prefix.endsWith('.') ? `${prefix}>` : `${prefix}*`);
    for await (const k of it) keys.push(k);
    const out: Array<[string, string]> = [];
    for (const k of keys.sort()) {
      const v = await this.get(k);
      if (v !== undefined) out.push([k, v]);
    }
    return out;
  }

  watch(prefix: string, fn: (c: StoreChange) => void): () => void {
    let iter: QueuedIterator<KvEntry> | undefined;
    let stopped = false;
    void (async () => {
      iter = await this.kv.watch({ key: prefix.endsWith('.') ? `${prefix}>` : prefix });
      if (stopped) return iter.stop();
      for await (const e of iter) fn({ key: e.key, value: e.operation === 'PUT' ? dec.decode(e.value) : undefined });
    })().catch(() => undefined);
    return () => {
      stopped = true;
      iter?.stop();
    };
  }

  /** Reachable now? For health checks. */
  async ping(): Promise<void> {
    await this.nc.flush();
  }

  async close(): Promise<void> {
    await this.nc.drain();
  }
}
