import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ContainerExposition, labelText, type ObjectFigures } from './container-metrics';
import { AgentMetrics } from './metrics';

/** promtool's verdict on an exposition: '' when clean. */
function promtool(text: string): string {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error) throw r.error;
  return `${r.stdout}${r.stderr}`.trim() + (r.status === 0 ? '' : ` (exit ${r.status})`);
}

const full: ObjectFigures = {
  timestamp: new Date(1_700_000_000_500),
  cpuUsageNs: 2_500_000_000,
  cpuThrottledNs: 1_000_000,
  cpuThrottledPeriods: 4,
  cpuQuotaUs: 50_000,
  cpuPeriodUs: 100_000,
  memoryUsageBytes: 4096,
  memoryWorkingSetBytes: 3000,
  memoryLimitBytes: 67_108_864,
  netRxBytes: 10,
  netTxBytes: 20,
  blkioReadBytes: 30,
  blkioWriteBytes: 40,
  pids: 3,
};

const labels = (name: string, extra: Partial<Record<'id' | 'image', string>> = {}): string =>
  labelText({ id: extra.id ?? `/agent/${name}`, name, image: extra.image ?? '', object_id: `obj-${name}`, kind: 'process', origin: 'created' });

describe('objects in cAdvisor names', () => {
  it('writes every figure under its cAdvisor name and unit, grouped by family, and promtool finds nothing', () => {
    const text = new ContainerExposition(() => [{ labels: labels('web', { image: 'local/busybox:latest' }), figures: full }]).exposition();
    const l = 'id="/agent/web",name="web",image="local/busybox:latest",object_id="obj-web",kind="process",origin="created"';
    for (const line of [
      `container_cpu_usage_seconds_total{${l},cpu="total"} 2.5`,
      `container_cpu_cfs_throttled_seconds_total{${l}} 0.001`,
      `container_cpu_cfs_throttled_periods_total{${l}} 4`,
      `container_spec_cpu_quota{${l}} 50000`,
      `container_spec_cpu_period{${l}} 100000`,
      `container_memory_usage_bytes{${l}} 4096`,
      `container_memory_working_set_bytes{${l}} 3000`,
      `container_spec_memory_limit_bytes{${l}} 67108864`,
      `container_network_receive_bytes_total{${l}} 10`,
      `container_network_transmit_bytes_total{${l}} 20`,
      `container_fs_reads_bytes_total{${l}} 30`,
      `container_fs_writes_bytes_total{${l}} 40`,
      `container_processes{${l}} 3`,
      `container_last_seen{${l}} 1700000000`,
    ]) assert.ok(text.split('\n').includes(line), `missing: ${line}\n${text}`);
    assert.equal(promtool(text), '');
  });

  it('leaves out the series of a figure an object lacks, and an object with none at all', () => {
    const bare: ObjectFigures = { timestamp: new Date(), memoryUsageBytes: 100, cpuPeriodUs: 100_000 };
    const text = new ContainerExposition(() => [
      { labels: labels('a'), figures: bare },
      { labels: labels('b'), figures: { timestamp: new Date() } },
      { labels: labels('c'), figures: undefined },
    ]).exposition();
    assert.match(text, /^container_memory_usage_bytes\{[^}]*name="a"[^}]*\} 100$/m);
    // No limit, no quota (so no period either), nothing of b or c.
    assert.doesNotMatch(text, /container_spec_memory_limit_bytes|container_spec_cpu|container_cpu_usage|name="b"|name="c"/);
    assert.equal(promtool(text), '');
    assert.equal(new ContainerExposition(() => [{ labels: labels('b'), figures: {} }]).exposition(), '');
  });

  it('escapes label values (quotes, backslashes, newlines) and leaves out empty ones', () => {
    const l = labelText({ id: '', name: 'a"b\\c\nd', image: '', object_id: 'obj-1', kind: 'cgroup', origin: '' });
    assert.equal(l, 'name="a\\"b\\\\c\\nd",object_id="obj-1",kind="cgroup"');
    assert.equal(promtool(new ContainerExposition(() => [{ labels: l, figures: full }]).exposition()), '');
  });

  it('builds the text once per change of the samples, not once per scrape', () => {
    let builds = 0;
    let value = 1;
    const exp = new ContainerExposition(() => {
      builds++;
      return [{ labels: labels('x'), figures: { pids: value } }];
    });
    const first = exp.exposition();
    assert.equal(exp.exposition(), first);
    assert.equal(builds, 1);
    value = 2;
    assert.equal(exp.exposition(), first, 'a scrape between samples shows the last built text');
    exp.invalidate();
    assert.match(exp.exposition(), /^container_processes\{[^}]*\} 2$/m);
    assert.equal(builds, 2);
  });
});

describe("the agent's own metrics", () => {
  it('adds up what each provider says when scraped, and forgets a provider that leaves', async () => {
    const m = new AgentMetrics();
    const offA = m.objects.provide(() => [[{ kind: 'process', state: 'running' }, 2]]);
    m.objects.provide(() => [[{ kind: 'process', state: 'running' }, 1], [{ kind: 'container', state: 'failed' }, 1]]);
    m.reports.provide(() => [[{ outcome: 'sent' }, 7]]);
    let text = await m.text();
    assert.match(text, /^agent_objects\{kind="process",state="running"\} 3$/m);
    assert.match(text, /^agent_objects\{kind="container",state="failed"\} 1$/m);
    assert.match(text, /^agent_reports_total\{outcome="sent"\} 7$/m);
    offA();
    text = await m.text();
    assert.match(text, /^agent_objects\{kind="process",state="running"\} 1$/m);
    m.withDefaults();
    text = await m.text();
    assert.match(text, /^process_cpu_seconds_total /m);
    assert.equal(promtool(text), '');
  });

  it('puts the objects first: each family stays in one block', async () => {
    const m = new AgentMetrics();
    m.addExposition(() => new ContainerExposition(() => [{ labels: labels('web'), figures: full }]).exposition());
    m.calls.provide(() => [[{ grpc_type: 'unary', grpc_service: 'agent.v1.AgentService', grpc_method: 'Get', grpc_code: 'OK' }, 1]]);
    const text = await m.text();
    assert.ok(text.indexOf('container_processes') < text.indexOf('grpc_server_handled_total'));
    assert.equal(promtool(text), '');
  });
});
