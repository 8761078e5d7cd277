import { FailedPreconditionError, UnavailableError, errorMessage, type Logger } from '@agent/grpc-kit';
import { policyv1 } from '@agent/proto';
import type { Records } from './records';

/** Writes tried while other agents keep storing a policy in between. */
const MAX_ATTEMPTS = 10;

/**
 * The network policy as the fleet shares it (config.network in the cluster
 * store): replaced whole, its revision only going up. Changes run on the
 * system queue, in order with the config changes that apply it.
 */
export class PolicyBook {
  constructor(
    private readonly records: Records,
    private readonly system: (name: string, fn: () => Promise<void>) => Promise<void>,
    private readonly log: Logger,
  ) {}

  async apply(p: policyv1.Policy): Promise<policyv1.PolicyStatus> {
    let status: policyv1.PolicyStatus | undefined;
    let failure: unknown;
    // The system queue logs and swallows what its tasks throw: the caller needs it.
    await this.system('policy apply', async () => {
      try {
        // The check and the write are one step fleet-wide: a policy another agent stored in between makes the write fail, and the check runs again on it.
        for (let attempt = 1; ; attempt++) {
          const read = await this.records.getPolicy();
          const current = this.parse(read);
          if (p.revision <= current.revision) throw new FailedPreconditionError(`revision: ${p.revision} is not greater than the current ${current.revision}`);
          if (await this.records.putPolicyIf(JSON.stringify(policyv1.Policy.toJSON(p)), read)) break;
          if (attempt === MAX_ATTEMPTS) throw new UnavailableError(`the policy changed under each of ${MAX_ATTEMPTS} writes; try again`);
        }
        status = { revision: p.revision, appliedAt: new Date(), groups: p.groups.length, rules: p.rules.length };
        this.log.info('network policy stored', { revision: p.revision, groups: p.groups.length, rules: p.rules.length });
      } catch (err) {
        failure = err;
      }
    });
    if (failure !== undefined || !status) throw failure ?? new Error('policy apply did not run');
    return status;
  }

  /** What the store holds (revision 0 and nothing before the first); one that cannot be read counts as none. */
  async current(): Promise<policyv1.Policy> {
    return this.parse(await this.records.getPolicy());
  }

  /** A stored value as a policy: none (revision 0) when absent or unreadable. */
  parse(value: string | undefined): policyv1.Policy {
    if (value === undefined) return policyv1.Policy.fromPartial({});
    try {
      return policyv1.Policy.fromJSON(JSON.parse(value));
    } catch (err) {
      this.log.warn('config.network is not a policy; taken as none', { reason: errorMessage(err) });
      return policyv1.Policy.fromPartial({});
    }
  }
}
