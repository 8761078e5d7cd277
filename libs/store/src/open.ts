import * as path from 'node:path';
import { EmbeddedStore } from './embedded';
import { NatsStore } from './nats';
import type { KvStore } from './store';

/** The cluster store when a URL is given (a fleet), else the embedded one (one node). */
export async function openStore(opts: { clusterUrl: string; dataDir: string; hostId: string }): Promise<KvStore> {
  if (opts.clusterUrl !== '') return NatsStore.open(opts.clusterUrl, 'agent', `agent-${opts.hostId}`);
  return new EmbeddedStore(path.join(opts.dataDir, 'store'));
}
