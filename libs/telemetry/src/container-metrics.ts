// The objects' figures as cAdvisor names them, so that dashboards and alerts
// written for cAdvisor read the agent's objects as they are. The text is built
// from the collector's last samples (no file is read for a scrape), at most
// once per sample tick, and only when somebody scrapes.

/** One object's figures (an agent.v1.Report has these fields). */
export interface ObjectFigures {
  readonly timestamp?: Date;
  readonly cpuUsageNs?: number;
  readonly cpuThrottledNs?: number;
  readonly cpuThrottledPeriods?: number;
  readonly cpuQuotaUs?: number;
  readonly cpuPeriodUs?: number;
  readonly memoryUsageBytes?: number;
  readonly memoryWorkingSetBytes?: number;
  readonly memoryLimitBytes?: number;
  readonly netRxBytes?: number;
  readonly netTxBytes?: number;
  readonly blkioReadBytes?: number;
  readonly blkioWriteBytes?: number;
  readonly pids?: number;
}

/** An object's labels: id (its cgroup path), name, image, object_id, kind, origin. An empty value is left out. */
export type ObjectLabels = Readonly<Record<'id' | 'name' | 'image' | 'object_id' | 'kind' | 'origin', string>>;

interface Family {
  readonly name: string;
  readonly type: 'counter' | 'gauge';
  readonly help: string;
  /** The value from the figures, or undefined for no series. */
  readonly value: (f: ObjectFigures) => number | undefined;
  /** Labels of this family only (cAdvisor's cpu="total"). */
  readonly extra?: string;
}

const seconds = (ns: number | undefined): number | undefined => (ns === undefined ? undefined : ns / 1e9);

const FAMILIES: readonly Family[] = [
  { name: 'container_cpu_usage_seconds_total', type: 'counter', help: 'Cumulative cpu time consumed in seconds.', value: (f) => seconds(f.cpuUsageNs), extra: 'cpu="total"' },
  { name: 'container_cpu_cfs_throttled_seconds_total', type: 'counter', help: 'Total time duration the container has been throttled.', value: (f) => seconds(f.cpuThrottledNs) },
  { name: 'container_cpu_cfs_throttled_periods_total', type: 'counter', help: 'Number of throttled period intervals.', value: (f) => f.cpuThrottledPeriods },
  { name: 'container_spec_cpu_quota', type: 'gauge', help: 'CPU quota of the container (microseconds of CPU time per period).', value: (f) => f.cpuQuotaUs },
  { name: 'container_spec_cpu_period', type: 'gauge', help: 'CPU period of the container (microseconds).', value: (f) => (f.cpuQuotaUs === undefined ? undefined : f.cpuPeriodUs) },
  { name: 'container_memory_usage_bytes', type: 'gauge', help: 'Current memory usage in bytes, including all memory regardless of when it was accessed.', value: (f) => f.memoryUsageBytes },
  { name: 'container_memory_working_set_bytes', type: 'gauge', help: 'Current working set in bytes (usage less inactive file cache).', value: (f) => f.memoryWorkingSetBytes },
  { name: 'container_spec_memory_limit_bytes', type: 'gauge', help: 'Memory limit for the container (no series: no limit).', value: (f) => f.memoryLimitBytes },
  { name: 'container_network_receive_bytes_total', type: 'counter', help: 'Cumulative count of bytes received (all interfaces of its network namespace).', value: (f) => f.netRxBytes },
  { name: 'container_network_transmit_bytes_total', type: 'counter', help: 'Cumulative count of bytes transmitted (all interfaces of its network namespace).', value: (f) => f.netTxBytes },
  { name: 'container_fs_reads_bytes_total', type: 'counter', help: 'Cumulative count of bytes read (all block devices).', value: (f) => f.blkioReadBytes },
  { name: 'container_fs_writes_bytes_total', type: 'counter', help: 'Cumulative count of bytes written (all block devices).', value: (f) => f.blkioWriteBytes },
  { name: 'container_processes', type: 'gauge', help: 'Number of processes running inside the container.', value: (f) => f.pids },
];

/** A label value as the exposition format wants it: backslash, double quote and newline escaped. */
export function escapeLabel(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** A proto enum value as a label value: its name without the prefix, in lower case (KIND_CONTAINER -> container). */
export function enumLabel(names: Readonly<Record<number, string>>, value: number, prefix: string): string {
  const name = names[value] ?? String(value);
  return (name.startsWith(prefix) ? name.slice(prefix.length) : name).toLowerCase();
}

/** `a="x",b="y"`, without the empty ones. */
export function labelText(labels: Readonly<Record<string, string>>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) if (v !== '') parts.push(`${k}="${escapeLabel(v)}"`);
  return parts.join(',');
}

function hasFigures(f: ObjectFigures): boolean {
  return FAMILIES.some((fam) => fam.value(f) !== undefined);
}

/** The objects' series, kept as text until a sample changes them. */
export class ContainerExposition {
  private text = '';
  private stale = true;

  /** The objects now: each one's label text (labelText) and last figures. */
  constructor(private readonly objects: () => Iterable<{ readonly labels: string; readonly figures: ObjectFigures | undefined }>) {}

  /** A sample (or a task made or removed) changed what the next scrape shows. */
  invalidate(): void {
    this.stale = true;
  }

  exposition(): string {
    if (this.stale) {
      this.text = this.build();
      this.stale = false;
    }
    return this.text;
  }

  private build(): string {
    const rows = [...this.objects()].filter((o): o is { labels: string; figures: ObjectFigures } => o.figures !== undefined && hasFigures(o.figures));
    if (rows.length === 0) return '';
    const out: string[] = [];
    for (const fam of FAMILIES) {
      let head = false;
      for (const { labels, figures } of rows) {
        const v = fam.value(figures);
        if (v === undefined) continue;
        if (!head) {
          out.push(`# HELP ${fam.name} ${fam.help}\n# TYPE ${fam.name} ${fam.type}\n`);
          head = true;
        }
        out.push(`${fam.name}{${fam.extra ? (labels === '' ? fam.extra : `${labels},${fam.extra}`) : labels}} ${v}\n`);
      }
    }
    out.push('# HELP container_last_seen Last time a container was seen by the exporter\n# TYPE container_last_seen gauge\n');
    for (const { labels, figures } of rows) out.push(`container_last_seen{${labels}} ${Math.floor((figures.timestamp?.getTime() ?? Date.now()) / 1000)}\n`);
    return out.join('');
  }
}
