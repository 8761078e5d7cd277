import { errorMessage, type Logger, type Peer } from '@agent/grpc-kit';
import { asksAny, checkHostLimits } from '@agent/kinds';
import type { internalv1, v1 } from '@agent/proto';

/** How long the manager may take to say what the host lacks, and how long after a failure it is not asked again. */
const ASK_TIMEOUT_MS = 2_000;
const RETRY_AFTER_MS = 5_000;

/**
 * What this host cannot give each kind's objects (a kernel without a
 * controller or file), as the manager's drivers say: asked once, then a
 * Create or Update asking such a limit is refused when it is accepted, before
 * anything is recorded. While the manager cannot say, nothing is refused
 * here: its driver refuses the limit when the event runs.
 */
export class HostLimits {
  private known: ReadonlyMap<v1.Kind, Readonly<Record<string, string>>> | undefined;
  private asking: Promise<void> | undefined;
  private notBefore = 0;

  constructor(
    private readonly manager: Peer<internalv1.ManagerClient>,
    private readonly log: Logger,
  ) {}

  /** Before check: what the host lacks is known, if the manager can say (only asked when r asks a limit). */
  ready(r: v1.Resources | undefined): Promise<void> {
    return asksAny(r) ? this.load() : Promise.resolve();
  }

  /** Refuses (FAILED_PRECONDITION naming field.<dimension>) a limit in r that objects of kind cannot have on this host. */
  check(kind: v1.Kind, field: string, r: v1.Resources | undefined): void {
    const lacking = this.known?.get(kind);
    if (lacking) checkHostLimits(lacking, field, r);
  }

  /** Asks the manager, unless known (one question at a time; after a failure, not again for a while). */
  load(): Promise<void> {
    if (this.known || Date.now() < this.notBefore) return Promise.resolve();
    this.asking ??= this.manager
      .call('hostLimits', {}, { timeoutMs: ASK_TIMEOUT_MS })
      .then((info) => {
        this.known = new Map(info.kinds.map((k) => [k.kind, k.lacking]));
        const lacking = [...new Set(info.kinds.flatMap((k) => Object.keys(k.lacking)))];
        if (lacking.length > 0) this.log.info('limits this host cannot set', { lacking: lacking.join(', ') });
      })
      .catch((err: unknown) => {
        this.notBefore = Date.now() + RETRY_AFTER_MS;
        this.log.warn('could not ask the manager what limits this host lacks; its drivers will refuse them when the event runs', { reason: errorMessage(err) });
      })
      .finally(() => (this.asking = undefined));
    return this.asking;
  }
}
