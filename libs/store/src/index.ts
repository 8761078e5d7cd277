export { Keys } from './store';
export type { KvStore, StoreChange } from './store';
export { EmbeddedStore } from './embedded';
export { NatsStore } from './nats';
export { openStore } from './open';
