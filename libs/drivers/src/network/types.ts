// The desired state of the network dataplane, as agentcore's policy engine
// computes it: who is in which group, in which mode, and the rules. The
// network driver compiles it; nothing here knows nftables.

export type EnforcementMode = 'discover' | 'monitor' | 'protect';
export type RuleAction = 'allow' | 'deny';

/** A segmented workload (a container with its own network namespace). */
export interface Endpoint {
  readonly objectId: string;
  /** IPv4 address; undefined until the runtime has one. */
  readonly ip?: string;
  /** Fixed before the workload starts: its traffic is dropped while it is pending. */
  readonly mac?: string;
  /** Names of the policy groups it is a member of. */
  readonly groups: readonly string[];
  /** The strictest mode among its groups. */
  readonly mode: EnforcementMode;
  /** Its address is not known yet and its policy forbids by default: everything it sends or receives is dropped (by MAC). */
  readonly pending: boolean;
  readonly quarantined: boolean;
}

export interface NetRule {
  readonly id: number;
  /** A group name, "any", "host", or an IPv4/IPv6 address or CIDR. */
  readonly from: string;
  readonly to: string;
  /** "any", "tcp/N", "udp/N", "tcp/N-M"; empty means any. */
  readonly ports: readonly string[];
  readonly action: RuleAction;
}

export interface NetworkState {
  readonly endpoints: readonly Endpoint[];
  /** Every group of the policy (a rule names only these, besides any/host/CIDRs). */
  readonly groups: readonly string[];
  readonly rules: readonly NetRule[];
  /**
   * Ids of rules removed or changed with revoke_established: the connections
   * they had allowed (conntrack entries with the id as mark) are cut after
   * the transaction.
   */
  readonly revoke?: readonly number[];
}

export interface ProgramResult {
  /** Commands in the transaction (0: the dataplane already was as desired). */
  readonly changes: number;
  /** Whether the agent's table exists after this (false: nothing to enforce, all removed). */
  readonly present: boolean;
  /** Established connections of revoked rules cut (conntrack entries deleted) before program() returned. */
  readonly cut: number;
  /** Why cutting them failed, when it did: the policy is programmed all the same. */
  readonly cutError?: string;
  /**
   * Newly quarantined endpoints: their connections being cut, after
   * program() returned. Their packets are already dropped (the quarantine
   * rules come before established connections are passed), so nobody waits
   * for conntrack walking its table; this settles with what it cut.
   */
  readonly quarantineCut?: Promise<{ readonly cut: number; readonly cutError?: string }>;
}

/** Verdicts as the dataplane logs them (the NFLOG prefix "<verdict>:<rule id>:<path>"). */
export const LogVerdict = { Allowed: 'A', Denied: 'D', Violation: 'V', Learned: 'L' } as const;
export type LogVerdictCode = (typeof LogVerdict)[keyof typeof LogVerdict];

/** Where traffic of a container passes: to another container or out (forward), to the host (input), from the host (output). */
export type NetPath = 'fwd' | 'in' | 'out';

export interface LogPrefix {
  readonly verdict: LogVerdictCode;
  /** 0: no rule decided, the mode did. */
  readonly ruleId: number;
  readonly path: NetPath;
}

export function formatLogPrefix(p: LogPrefix): string {
  return `${p.verdict}:${p.ruleId}:${p.path}`;
}

/** A prefix the agent's dataplane wrote; undefined for anything else. */
export function parseLogPrefix(text: string): LogPrefix | undefined {
  const m = /^([ADVL]):(\d{1,10}):(fwd|in|out)$/.exec(text.trim());
  if (!m) return undefined;
  return { verdict: m[1] as LogVerdictCode, ruleId: Number(m[2]), path: m[3] as NetPath };
}

/** What an enforcing driver does besides the Driver interface. */
export interface Enforcing {
  /** Makes the dataplane what state says, in one atomic transaction, changing only what differs. */
  program(state: NetworkState): Promise<ProgramResult>;
  /** Packets counted per rule id (new connections for allow rules) since the rule was programmed. */
  ruleHits(): Promise<Map<number, number>>;
  /** Removes everything the agent added. */
  clear(): Promise<void>;
}
