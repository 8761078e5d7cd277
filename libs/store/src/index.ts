export { Keys, StoreWriteError } from './store';
export type { KvStore, StoreChange } from './store';
export { LmdbStore } from './lmdb-store';
export { FileStore } from './file-store';
export { NatsStore, connectNats } from './nats';
export { openStore } from './open';
