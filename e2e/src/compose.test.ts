// The local cluster as users run it: docker-compose builds the image on a
// local Node base, runs the five services as containers, and the trace of a
// request spans all five. Jaeger cannot be pulled here: the test override
// (docker-compose.test.yml) puts tools/otlp-receiver in its place.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { api, BUSYBOX, freePort, ROOT, sh, waitFor, type ReceivedSpan } from '@agent/testkit';

const run = promisify(execFile);
const SERVICES = ['apiserver', 'agentcore', 'manager', 'collector', 'reporter'];

describe('docker-compose cluster (OTLP receiver standing in for Jaeger)', () => {
  const project = `agente2e${randomBytes(3).toString('hex')}`;
  let env: NodeJS.ProcessEnv;
  let address = '';
  let token = '';

  const compose = (...args: string[]) =>
    run('docker-compose', ['-p', project, '-f', path.join(ROOT, 'docker-compose.yml'), '-f', path.join(ROOT, 'docker-compose.test.yml'), ...args], {
      cwd: ROOT,
      env,
      maxBuffer: 64 * 1024 * 1024,
    });

  before(async () => {
    await run('bash', [path.join(ROOT, 'tools/node-base-image.sh')]);
    const [apiPort, uiPort] = [await freePort(), await freePort()];
    address = `127.0.0.1:${apiPort}`;
    env = {
      ...process.env,
      NODE_IMAGE: 'local/node:20',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      AGENT_PORT: String(apiPort),
      JAEGER_UI_PORT: String(uiPort),
      AGENT_HOST_ID: project,
    };
    await compose('build');
    await compose('up', '-d');
  });

  after(async () => {
    await compose('down', '-v', '--remove-orphans', '-t', '5').catch(() => undefined);
    const left = await sh('docker', ['ps', '-aq', '--filter', `label=io.agent.host-id=${project}`]);
    if (left) await run('docker', ['rm', '-f', ...left.split('\n')]);
  });

  it('publishes every port on 127.0.0.1 only (docker-compose config)', async () => {
    const { stdout } = await run('docker-compose', ['-f', path.join(ROOT, 'docker-compose.yml'), 'config'], { cwd: ROOT, env: { ...process.env, AGENT_PUBLISH_ADDR: '' } });
    // The items under each "ports:" key.
    const published: string[] = [];
    let indent = -1;
    for (const line of stdout.split('\n')) {
      const lead = line.length - line.trimStart().length;
      if (line.trim() === 'ports:') indent = lead;
      else if (indent >= 0 && line.trimStart().startsWith('- ') && lead >= indent) published.push(line.trim());
      else indent = -1;
    }
    assert.equal(published.length, 2, stdout);
    for (const p of published) assert.match(p, /^- ['"]?127\.0\.0\.1:\d+:\d+/, `published beyond loopback: ${p}`);
  });

  it('runs the five services, healthy through grpc.health.v1', async () => {
    for (const s of SERVICES) {
      await waitFor(`${s} healthy`, async () => {
        const st = await sh('docker', ['inspect', '-f', '{{.State.Health.Status}}', `${project}_${s}_1`]).catch(() => '');
        return st === 'healthy' ? true : undefined;
      }, 90_000, 500);
    }
    // Only the apiserver's port and Jaeger's UI are published.
    const published = await sh('docker', ['ps', '--filter', `label=com.docker.compose.project=${project}`, '--format', '{{.Names}} {{.Ports}}']);
    for (const line of published.split('\n')) {
      const [name = '', ...ports] = line.split(' ');
      if (!name.includes('_apiserver_') && !name.includes('_jaeger_')) assert.doesNotMatch(ports.join(' '), /->/, `${name} publishes a port`);
      else {
        const mapped = ports.join(' ').split(/,\s*/).filter((p) => p.includes('->'));
        assert.ok(mapped.length > 0 && mapped.every((p) => p.startsWith('127.0.0.1:')), `${name} publishes beyond loopback: ${ports.join(' ')}`);
      }
    }
  });

  it('wants the admin token, which a user reads from the apiserver container', async () => {
    const none = await api({ address }, 'List', {});
    assert.equal(none.error?.code, 'unauthenticated', JSON.stringify(none));
    token = (await compose('exec', '-T', 'apiserver', 'cat', '/var/lib/agent/auth/admin.token')).stdout.trim();
    assert.ok(token.length >= 32);
    const list = await api({ address, token }, 'List', {});
    assert.ok(list.ok, JSON.stringify(list));
  });

  it('runs a process object as nobody, from the manager container', async () => {
    const made = await api({ address, token }, 'Create', { spec: { name: 'compose-nap', kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] } }, wait: true });
    assert.equal(made.body?.state, 'STATE_RUNNING', JSON.stringify(made));
    const o = (await api({ address, token }, 'Get', { object_id: made.body.objectId })).body as { pid: number; spec: { process: { user: string } } };
    assert.equal(o.spec.process.user, 'nobody');
    const uid = fs.readFileSync(`/proc/${o.pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:'));
    assert.equal(uid, 'Uid:\t65534\t65534\t65534\t65534');
    const del = await api({ address, token }, 'Delete', { object_id: made.body.objectId, wait: true });
    assert.equal(del.body.state, 'STATE_DELETED');
  });

  it('creates, pushes, reports once and deletes a container through the published port, in traces spanning all five', async () => {
    const created = await api({ address, token }, 'Create', {
      spec: { name: 'compose-web', kind: 'KIND_CONTAINER', resources: { memory_bytes: 64 << 20 }, container: { image: BUSYBOX, command: ['sleep', '600'] } },
      wait: true,
    });
    assert.equal(created.body?.state, 'STATE_RUNNING', JSON.stringify(created));
    const id: string = created.body.objectId;
    const on = await api({ address, token }, 'PushOn', { object_id: id, interval_ms: 200, wait: true });
    assert.equal(on.body.status, 'EVENT_STATUS_SUCCEEDED');
    const once = await api({ address, token }, 'PushOnce', { object_id: id });
    assert.ok(Number(once.body.memoryUsageBytes) > 0);
    const del = await api({ address, token }, 'Delete', { object_id: id, wait: true });
    assert.equal(del.body.state, 'STATE_DELETED');
    assert.equal(await sh('docker', ['ps', '-aq', '--filter', `label=io.agent.object-id=${id}`]), '');

    const spans = await waitFor('a trace with all five services', async () => {
      const { stdout } = await run('docker', ['logs', `${project}_jaeger_1`], { maxBuffer: 64 * 1024 * 1024 });
      const all = stdout.split('\n').filter((l) => l.startsWith('{"traceId"')).map((l) => JSON.parse(l) as ReceivedSpan);
      const byTrace = new Map<string, Set<string>>();
      for (const s of all) (byTrace.get(s.traceId) ?? byTrace.set(s.traceId, new Set()).get(s.traceId)!).add(s.service);
      // The container's trace (the process object before it has no Docker spans).
      const docker = new Set(all.filter((s) => s.name.startsWith('docker ')).map((s) => s.traceId));
      const full = [...byTrace.entries()].find(([id, svcs]) => docker.has(id) && SERVICES.every((s) => svcs.has(`agent-${s}`)));
      return full ? all.filter((s) => s.traceId === full[0]) : undefined;
    }, 20_000, 500);
    assert.ok(spans.some((s) => s.name.startsWith('docker ')));
  });

  it('goes down within 10 s, leaving no containers or networks', async () => {
    const t0 = Date.now();
    await compose('down', '-v', '--remove-orphans', '-t', '5');
    assert.ok(Date.now() - t0 < 10_000, `down took ${Date.now() - t0} ms`);
    assert.equal(await sh('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`]), '');
    assert.equal(await sh('docker', ['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${project}`]), '');
    assert.equal(await sh('docker', ['ps', '-aq', '--filter', `label=io.agent.host-id=${project}`]), '');
  });
});
