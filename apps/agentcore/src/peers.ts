import type { Peer } from '@agent/grpc-kit';
import type { internalv1 } from '@agent/proto';

export interface Peers {
  readonly manager: Peer<internalv1.ManagerClient>;
  readonly collector: Peer<internalv1.CollectorClient>;
  readonly reporter: Peer<internalv1.ReporterClient>;
}

/** How long a peer call may take, apart from the manager's (which may pull images). */
export const PEER_TIMEOUT_MS = 10_000;
