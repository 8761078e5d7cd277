import * as os from 'node:os';
import { HealthComponent, LOG_LEVELS, type LogLevel } from '@agent/option';
import { errorMessage, Logger, type HealthRegistry, type Peer } from '@agent/grpc-kit';
import type { internalv1 } from '@agent/proto';
import { Keys, type KvStore } from '@agent/store';

export interface ClusterOptions {
  readonly hostId: string;
  readonly version: string;
  readonly heartbeatMs: number;
  readonly policyPullMs: number;
  readonly statsUploadMs: number;
  readonly healthMs: number;
  readonly cleanupMs: number;
}

/** What the cluster sync needs of agentcore. */
export interface CoreView {
  /** Runs fn on the one system queue, in order with other config tasks. */
  system(name: string, fn: () => Promise<void> | void): Promise<void>;
  summary(): Record<string, number>;
  /** How long the oldest queued task has waited, in ms (0 when idle). */
  oldestWaitMs(): number;
  dropDeletedBefore(t: number): number;
  /** Notices a restarted collector or reporter and gives it its state again. */
  checkPeers(): Promise<void>;
  dropDeadTasks(): Promise<number>;
  /** config.network changed (applied here or on another agent of the fleet). */
  policyChanged(value: string | undefined): void;
  /** config.learned.<host> changed: the rules that agent learned. */
  learnedChanged(host: string, value: string | undefined): void;
}

interface HostRecord {
  hostId: string;
  hostname: string;
  agentVersion: string;
  startedAt: string;
  lastSeen: string;
  stale: boolean;
  stopped?: boolean;
}

/**
 * The control plane's cluster half, as in the seed's clusterLoop and
 * timerLoop: this host's record and heartbeat, config watchers that become
 * tasks on the one system queue and apply live, and the periodic timers
 * (policy pull, stats upload, health, cleanup). Other hosts that stop
 * heartbeating are marked stale, never deleted.
 */
export class ClusterSync {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly unwatch: Array<() => void> = [];
  private readonly startedAt = new Date().toISOString();
  private policyRevision = '';
  /** This node's rules as last applied (the network policy's engine is agentcore's segmentation). */
  nodeRules: unknown;

  constructor(
    private readonly store: KvStore,
    private readonly core: CoreView,
    private readonly collector: Peer<internalv1.CollectorClient>,
    private readonly health: HealthRegistry | undefined,
    private readonly opts: ClusterOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    // A store that cannot write (a full disk) must not keep the agent from starting: health says so.
    await this.beat().catch((err: unknown) => this.log.warn('host record not written', { reason: errorMessage(err) }));
    this.unwatch.push(this.store.watch(Keys.agentConfig(this.opts.hostId), (c) => void this.core.system('config agent', () => this.applyAgentConfig(c.value))));
    this.unwatch.push(this.store.watch(Keys.network, (c) => void this.core.system('config network', () => this.applyNetwork(c.value))));
    this.unwatch.push(this.store.watch(Keys.learnedAll, (c) => void this.core.system('config learned', () => this.core.learnedChanged(c.key.slice(Keys.learnedAll.length), c.value))));
    this.unwatch.push(this.store.watch(Keys.nodeRules(this.opts.hostId), (c) => void this.core.system('config rules', () => this.applyRules(c.value))));
    this.every(this.opts.heartbeatMs, 'heartbeat', () => this.beat());
    this.every(this.opts.heartbeatMs, 'peer check', () => this.core.checkPeers());
    this.every(this.opts.policyPullMs, 'policy pull', () => this.pullPolicy());
    this.every(this.opts.statsUploadMs, 'stats upload', () => this.uploadStats());
    this.every(this.opts.healthMs, 'health check', () => this.checkHealth());
    this.every(this.opts.cleanupMs, 'cleanup', () => this.cleanup());
    await this.checkHealth();
  }

  /** At exit: no more timers or watches; the host record says it stopped (not stale). */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const u of this.unwatch) u();
    await this.putHost({ stopped: true }).catch(() => undefined);
  }

  private every(ms: number, name: string, fn: () => Promise<void>): void {
    const t = setInterval(() => void fn().catch((err: unknown) => this.log.warn(`${name} failed`, { reason: errorMessage(err) })), ms);
    t.unref();
    this.timers.push(t);
  }

  private async putHost(extra: Partial<HostRecord> = {}): Promise<void> {
    const rec: HostRecord = {
      hostId: this.opts.hostId,
      hostname: os.hostname(),
      agentVersion: this.opts.version,
      startedAt: this.startedAt,
      lastSeen: new Date().toISOString(),
      stale: false,
      ...extra,
    };
    await this.store.put(Keys.host(this.opts.hostId), JSON.stringify(rec));
  }

  private beat(): Promise<void> {
    return this.putHost();
  }

  private applyAgentConfig(value: string | undefined): void {
    const cfg = parse<{ logLevel?: string; collectBaseMs?: number }>(value) ?? {};
    const level = cfg.logLevel && (LOG_LEVELS as readonly string[]).includes(cfg.logLevel) ? (cfg.logLevel as LogLevel) : undefined;
    Logger.setProcessLevel(level);
    if (cfg.collectBaseMs && cfg.collectBaseMs >= 100) {
      void this.collector.call('configure', { baseIntervalMs: cfg.collectBaseMs }, { timeoutMs: 5_000 }).catch((err: unknown) => this.log.warn('collector configure failed', { reason: errorMessage(err) }));
    }
    this.log.info('agent config applied', { logLevel: level ?? 'default', collectBaseMs: cfg.collectBaseMs });
  }

  private applyNetwork(value: string | undefined): void {
    const parsed = parse<{ revision?: string }>(value);
    this.policyRevision = parsed?.revision ?? (value ? String(value.length) : '');
    this.core.policyChanged(value);
    this.log.info('network policy applied', { revision: this.policyRevision || null });
  }

  private applyRules(value: string | undefined): void {
    this.nodeRules = parse(value);
    this.log.info('node rules applied', { present: value !== undefined });
  }

  /** A watch may miss a change across a reconnect; the pull catches it. */
  private async pullPolicy(): Promise<void> {
    const value = await this.store.get(Keys.network);
    const rev = parse<{ revision?: string }>(value)?.revision ?? (value ? String(value.length) : '');
    if (rev !== this.policyRevision) await this.core.system('config network (pulled)', () => this.applyNetwork(value));
  }

  private async uploadStats(): Promise<void> {
    await this.store.put(Keys.stats(this.opts.hostId), JSON.stringify({ hostId: this.opts.hostId, at: new Date().toISOString(), ...this.core.summary() }));
  }

  /** Store reachable, worker not stuck: grpc.health.v1 says so under the component names. */
  private async checkHealth(): Promise<void> {
    const storeOk = await this.store.ping().then(
      () => true,
      () => false,
    );
    const workerOk = this.core.oldestWaitMs() < Math.max(60_000, 2 * this.opts.healthMs);
    this.health?.set(HealthComponent.Store, storeOk);
    this.health?.set(HealthComponent.Worker, workerOk);
    if (!storeOk || !workerOk) this.log.warn('unhealthy', { store: storeOk, worker: workerOk });
  }

  /** Hosts that stopped heartbeating are marked stale (their records stay); old deleted objects and dead collect tasks go. */
  private async cleanup(): Promise<void> {
    const cutoff = Date.now() - 3 * this.opts.heartbeatMs;
    for (const [key, value] of await this.store.list(Keys.hosts)) {
      const h = parse<HostRecord>(value);
      if (!h || h.hostId === this.opts.hostId || h.stale || h.stopped) continue;
      if (Date.parse(h.lastSeen) < cutoff) {
        await this.store.put(key, JSON.stringify({ ...h, stale: true }));
        this.log.warn('host is stale', { hostId: h.hostId, lastSeen: h.lastSeen });
      }
    }
    const dropped = this.core.dropDeletedBefore(Date.now() - this.opts.cleanupMs);
    if (dropped > 0) this.log.info('dropped deleted objects', { dropped });
    const dead = await this.core.dropDeadTasks();
    if (dead > 0) this.log.info('removed dead collect tasks', { dead });
  }
}

function parse<T>(value: string | undefined): T | undefined {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value) as T;
  } catch {
    return undefined;
  }
}
