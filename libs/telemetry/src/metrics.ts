// The agent's own Prometheus metrics: one registry per process (the daemon's
// five services share it), served at GET /metrics beside the objects' series.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

type Labels<L extends string> = Readonly<Record<L, string>>;

/** What a provider says when scraped: label values -> value. */
export type Rows<L extends string> = Iterable<readonly [labels: Labels<L>, value: number]>;

/**
 * A metric whose values are read when scraped, from whoever provides them
 * (a gauge of what a service holds, or a counter a service keeps itself).
 * Several providers (two services of one kind in one test process) add up.
 */
export class Polled<L extends string> {
  private readonly providers = new Set<() => Rows<L>>();

  constructor(registry: Registry, type: 'gauge' | 'counter', name: string, help: string, labelNames: readonly L[]) {
    const providers = this.providers;
    const collect = function (this: Gauge<L> | Counter<L>): void {
      const sums = new Map<string, { labels: Labels<L>; value: number }>();
      for (const provide of providers) {
        for (const [labels, value] of provide()) {
          const key = labelNames.map((n) => labels[n]).join('\0');
          const had = sums.get(key);
          if (had) had.value += value;
          else sums.set(key, { labels, value });
        }
      }
      this.reset();
      for (const { labels, value } of sums.values()) {
        if (this instanceof Gauge) this.set(labels as Partial<Record<L, string>>, value);
        else this.inc(labels as Partial<Record<L, string>>, value);
      }
    };
    const config = { name, help, labelNames, registers: [registry], collect };
    if (type === 'gauge') new Gauge<L>(config);
    else new Counter<L>(config);
  }

  /** Adds a provider; the function returned removes it. */
  provide(rows: () => Rows<L>): () => void {
    this.providers.add(rows);
    return () => void this.providers.delete(rows);
  }
}

const LINT_FAILING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export class AgentMetrics {
  readonly registry = new Registry();
  /** As go-grpc-prometheus names it, so existing dashboards read it; counted by the servers (call-metrics.ts), read when scraped. */
  readonly calls = new Polled(
    this.registry,
    'counter',
    'grpc_server_handled_total',
    'Calls completed by the agent\'s gRPC services (calls between its own services included), by method and status code.',
    ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'] as const,
  );
  readonly storeErrors = new Counter({
    name: 'agent_store_errors_total',
    help: 'Writes the store refused (no room, read-only, failing, unreachable); the change they carried was refused to its caller.',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  });
  readonly policyProgram = new Histogram({
    name: 'agent_policy_program_seconds',
    help: 'Time to program the network dataplane for a policy, membership or quarantine change, until the kernel enforces it (ok) or refused it (failed).',
    labelNames: ['outcome'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly flows = new Counter({
    name: 'agent_network_flows_total',
    help: 'Connections of segmented containers the dataplane logged, by verdict (allowed, learned, violation, denied).',
    labelNames: ['verdict'] as const,
    registers: [this.registry],
  });
  readonly queueDepth = new Polled(this.registry, 'gauge', 'agent_event_queue_depth', 'Events and system tasks waiting to run.', []);
  readonly queueAge = new Polled(this.registry, 'gauge', 'agent_event_queue_oldest_seconds', 'How long the oldest waiting event or system task has waited (0: none waits).', []);
  readonly objects = new Polled(this.registry, 'gauge', 'agent_objects', 'Objects the agent keeps, by kind and state.', ['kind', 'state'] as const);
  readonly reports = new Polled(
    this.registry,
    'counter',
    'agent_reports_total',
    'Records for the upstream (reports, flows, object changes): spooled, sent (acknowledged by the upstream), dropped (the spool was full or refused them).',
    ['outcome'] as const,
  );
  readonly reportBacklog = new Polled(this.registry, 'gauge', 'agent_report_backlog', 'Records in the spool the upstream has not acknowledged.', []);
  private readonly expositions = new Set<() => string>();
  private defaults = false;

  /** Adds text in the exposition format (the objects' series); the function returned removes it. */
  addExposition(text: () => string): () => void {
    this.expositions.add(text);
    return () => void this.expositions.delete(text);
  }

  /** prom-client's process metrics (CPU, RSS, heap, event loop lag), from the first serve on. */
  withDefaults(): void {
    if (this.defaults) return;
    this.defaults = true;
    collectDefaultMetrics({ register: this.registry });
    // Gauges named like counters (promtool refuses them); nodejs_active_handles and the others say the same.
    for (const name of LINT_FAILING_DEFAULTS) this.registry.removeSingleMetric(name);
  }

  /** The whole exposition: the objects' series, then the agent's own. */
  async text(): Promise<string> {
    let out = '';
    for (const t of this.expositions) out += t();
    return out + (await this.registry.metrics());
  }

  readonly contentType = this.registry.contentType;
}

/** This process's metrics. */
export const metrics = new AgentMetrics();
