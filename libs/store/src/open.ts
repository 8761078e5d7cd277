import * as path from 'node:path';
import { LmdbStore } from './lmdb-store';
import { NatsStore } from './nats';
import type { KvStore } from './store';

/**
 * The cluster store when a URL is given (a fleet), else the embedded database
 * (one node) in <dataDir>/state; a <dataDir>/store of the old one-file-per-key
 * format is migrated into it at the first start.
 */
export async function openStore(opts: { clusterUrl: string; dataDir: string; hostId: string }): Promise<KvStore & { migrated?: number }> {
  if (opts.clusterUrl !== '') return NatsStore.open(opts.clusterUrl, 'agent', `agent-${opts.hostId}`);
  return LmdbStore.open(path.join(opts.dataDir, 'state'), { migrateFrom: path.join(opts.dataDir, 'store') });
}
