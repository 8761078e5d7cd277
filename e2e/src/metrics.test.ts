// GET /metrics, scraped by a real Prometheus (Debian's) with the reader
// token: the objects' series in cAdvisor's names follow the cgroup, and the
// agent's own metrics count what it does. promtool lints the exposition.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { api, BUSYBOX, freePort, startAgent, startPrometheus, waitFor, type Agent, type Prometheus, type Sample } from '@agent/testkit';

const MiB = 1024 * 1024;

describe('GET /metrics scraped by a real Prometheus', () => {
  let agent: Agent;
  let prom: Prometheus;
  let url: string;
  before(async () => {
    const port = await freePort();
    agent = await startAgent({ AGENT_METRICS_LISTEN: `127.0.0.1:${port}`, AGENT_COLLECT_BASE_MS: '200' });
    url = `http://127.0.0.1:${port}/metrics`;
    prom = await startPrometheus({ address: `127.0.0.1:${port}`, tokenFile: path.join(agent.dataDir, 'auth', 'reader.token') });
  });
  after(async () => {
    await prom?.stop();
    await agent?.stop();
  });

  const scrape = async (token: string | null = agent.readerToken, init: RequestInit = {}): Promise<Response> =>
    fetch(url, { ...init, headers: token === null ? {} : { authorization: `Bearer ${token}` } });

  /** The vector once it has a sample matching pred. */
  const until = (expr: string, pred: (s: Sample) => boolean = () => true, timeoutMs = 15_000): Promise<Sample[]> =>
    waitFor(`${expr} in Prometheus`, async () => {
      const v = await prom.query(expr);
      return v.some(pred) ? v : undefined;
    }, timeoutMs, 250);

  it('answers only a reader or admin token (401 otherwise), at /metrics only, to GET', async () => {
    assert.equal((await scrape(null)).status, 401);
    const wrong = await scrape('not-a-token');
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.equal((await scrape(agent.internalToken)).status, 401, 'the services\' own token is not a reader');
    assert.equal((await scrape(agent.readerToken)).status, 200);
    assert.equal((await scrape(agent.token)).status, 200);
    assert.equal((await fetch(url.replace('/metrics', '/'), { headers: { authorization: `Bearer ${agent.readerToken}` } })).status, 404);
    assert.equal((await scrape(agent.readerToken, { method: 'POST' })).status, 405);
  });

  it("a container's series carry cAdvisor's names and labels, its limit follows an Update, and promtool finds nothing", async () => {
    const made = await api(agent, 'Create', {
      spec: { name: 'metered', kind: 'KIND_CONTAINER', resources: { memory_bytes: String(64 * MiB), cpus: 0.25 }, container: { image: BUSYBOX, command: ['sleep', '600'] } },
      wait: true,
    });
    assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made));
    const id = made.body.objectId as string;
    try {
      const container = ((await api(agent, 'Get', { object_id: id })).body.runtimeId as string) ?? '';
      const [limit] = await until(`container_spec_memory_limit_bytes{object_id="${id}"}`);
      assert.equal(limit!.value, 64 * MiB);
      const { __name__: _name, job: _job, instance: _instance, ...labels } = limit!.metric;
      assert.deepEqual(labels, { id: `/docker/${container}`, name: 'metered', image: BUSYBOX, object_id: id, kind: 'container', origin: 'created' });
      // The other figures of a container on this host: CPU, quota, memory, network, fs, processes.
      const text = await (await scrape()).text();
      for (const name of [
        'container_cpu_usage_seconds_total',
        'container_cpu_cfs_throttled_seconds_total',
        'container_memory_usage_bytes',
        'container_memory_working_set_bytes',
        'container_network_receive_bytes_total',
        'container_network_transmit_bytes_total',
        'container_processes',
        'container_last_seen',
      ]) {
        assert.match(text, new RegExp(`^${name}\\{[^}]*object_id="${id}"[^}]*\\} [0-9.e+-]+$`, 'm'), name);
      }
      assert.match(text, new RegExp(`^container_cpu_usage_seconds_total\\{[^}]*object_id="${id}"[^}]*,cpu="total"\\} `, 'm'));
      assert.match(text, new RegExp(`^container_spec_cpu_quota\\{[^}]*object_id="${id}"[^}]*\\} 25000$`, 'm'));
      const usage = Number(new RegExp(`^container_memory_usage_bytes\\{[^}]*object_id="${id}"[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1]);
      const ws = Number(new RegExp(`^container_memory_working_set_bytes\\{[^}]*object_id="${id}"[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1]);
      assert.ok(ws > 0 && ws <= usage, `working set ${ws} within usage ${usage}`);
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      assert.equal(`${lint.stdout}${lint.stderr}`.trim(), '', 'promtool check metrics');
      assert.equal(lint.status, 0);

      const updated = await api(agent, 'Update', { object_id: id, resources: { memory_bytes: String(128 * MiB) }, wait: true });
      assert.equal(updated.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(updated));
      await until(`container_spec_memory_limit_bytes{object_id="${id}"}`, (s) => s.value === 128 * MiB);
    } finally {
      await api(agent, 'Delete', { object_id: id, wait: true });
    }
    const gone = await (await scrape()).text();
    assert.doesNotMatch(gone, new RegExp(`object_id="${id}"`), 'a deleted object has no series');
  });

  it("a process object is a cgroup too: the same names; a limit it lacks has no series", async () => {
    const made = await api(agent, 'Create', { spec: { name: 'metered-proc', kind: 'KIND_PROCESS', resources: { memory_bytes: String(32 * MiB) }, process: { command: ['sleep', '600'] } }, wait: true });
    assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made));
    const id = made.body.objectId as string;
    try {
      const [limit] = await until(`container_spec_memory_limit_bytes{object_id="${id}",kind="process"}`);
      assert.equal(limit!.value, 32 * MiB);
      assert.equal(limit!.metric.id, `/${agent.cgroupParent}/proc-${id}`);
      assert.equal(limit!.metric.image, undefined, 'no image label for a process');
      assert.deepEqual(await prom.query(`container_spec_cpu_quota{object_id="${id}"}`), [], 'no CPU limit: no quota series');
    } finally {
      await api(agent, 'Delete', { object_id: id, wait: true });
    }
  });

  it("the agent's own metrics: calls by method and code, objects by state, the queue, process CPU and memory", async () => {
    const refused = await api({ address: agent.address }, 'List', {}, '');
    assert.equal(refused.error?.code, 'unauthenticated', JSON.stringify(refused));
    const failed = await api(agent, 'Get', { object_id: 'obj-none' });
    assert.equal(failed.error?.code, 'not_found');
    const made = await api(agent, 'Create', { spec: { name: 'counted', kind: 'KIND_CGROUP', cgroup: { path: 'counted' } }, wait: true });
    const id = made.body.objectId as string;
    try {
      await until('grpc_server_handled_total{grpc_service="agent.v1.AgentService",grpc_method="List",grpc_code="Unauthenticated"}', (s) => s.value >= 1);
      await until('grpc_server_handled_total{grpc_service="agent.v1.AgentService",grpc_method="Get",grpc_code="NotFound"}', (s) => s.value >= 1);
      await until('grpc_server_handled_total{grpc_service="agent.v1.AgentService",grpc_method="Create",grpc_code="OK"}', (s) => s.value >= 1);
      // Calls between the daemon's own services are counted too.
      await until('grpc_server_handled_total{grpc_service="agent.internal.v1.Manager",grpc_method="CreateObject",grpc_code="OK"}', (s) => s.value >= 1);
      await until('agent_objects{kind="cgroup",state="running"}', (s) => s.value === 1);
      await until('agent_event_queue_depth', (s) => s.value === 0);
      await until('process_resident_memory_bytes', (s) => s.value > 0);
      await until('process_cpu_seconds_total', (s) => s.value > 0);
      const [target] = await prom.targets();
      assert.equal(target?.health, 'up', JSON.stringify(target));
    } finally {
      await api(agent, 'Delete', { object_id: id, wait: true });
    }
  });
});

describe('AGENT_METRICS_LISTEN', () => {
  it('a busy address fails the start, naming the variable', async () => {
    const busy = await freePort();
    const first = await startAgent({ AGENT_METRICS_LISTEN: `127.0.0.1:${busy}` });
    try {
      await assert.rejects(startAgent({ AGENT_METRICS_LISTEN: `127.0.0.1:${busy}` }), /AGENT_METRICS_LISTEN.*address in use/);
    } finally {
      await first.stop();
    }
  });

  it('off: nothing listens', async () => {
    const agent = await startAgent({ AGENT_METRICS_LISTEN: 'off' });
    try {
      assert.equal(agent.logs.find((l) => l.msg === 'agent ready')?.metrics, null);
      assert.equal(agent.logs.some((l) => l.msg === 'metrics listening'), false);
    } finally {
      await agent.stop();
    }
  });
});
