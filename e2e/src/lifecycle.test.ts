// Around the flows: every service answers grpcurl-style health and reflection;
// workloads that stop by themselves show it; the agent runs without Docker;
// SIGTERM exits cleanly and leaves the workloads running.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { api, bufCurl, bufTarget, BUSYBOX, isAlive, removeCgroupParent, ROOT, sh, startAgent, waitFor, type Agent } from '@agent/testkit';

const BUF = path.join(ROOT, 'node_modules/.bin/buf');

describe('every service serves health and reflection', () => {
  let agent: Agent;
  before(async () => (agent = await startAgent()));
  after(async () => agent?.stop());

  it('five servers, each healthy and listable over reflection, each listing its own services', async () => {
    const servers = agent.logs.filter((l) => l.msg === 'grpc server listening') as unknown as Array<{ module: string; address: string; services: string[] }>;
    // The apiserver twice: TCP and the unix socket.
    assert.deepEqual(servers.map((s) => s.module).sort(), ['agentcore', 'apiserver', 'apiserver', 'collector', 'manager', 'reporter']);
    for (const s of servers) {
      const name = s.services[0]!;
      const health = await bufCurl(s.address, 'grpc.health.v1.Health/Check', { service: name });
      assert.deepEqual(health.body, { status: 'SERVING' }, `${s.module} health`);
      const overall = await bufCurl(s.address, 'grpc.health.v1.Health/Check', {});
      assert.deepEqual(overall.body, { status: 'SERVING' }, `${s.module} overall health`);
      for (const proto of ['grpc-v1', 'grpc-v1alpha']) {
        const { stdout } = await promisify(execFile)(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--reflect-protocol', proto, '--list-methods', ...bufTarget(s.address)]);
        assert.match(stdout, new RegExp(`^${name.replace(/\./g, '\\.')}/`, 'm'), `${s.module} reflection ${proto}`);
      }
      // The process keeps one reflection index; each server lists only what it serves.
      const { stdout: listed } = await promisify(execFile)(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--list-services', ...bufTarget(s.address)]);
      assert.deepEqual(listed.trim().split('\n').sort(), [...s.services, 'grpc.health.v1.Health'].sort(), `${s.module} lists its own services`);
    }
  });

  it('health tells of what the services depend on: Docker, the store, the worker', async () => {
    const addr = (m: string): string => (agent.logs.find((l) => l.msg === 'grpc server listening' && l.module === m) as unknown as { address: string }).address;
    for (const [module, component] of [['manager', 'agent.docker'], ['agentcore', 'agent.store'], ['agentcore', 'agent.worker']] as const) {
      const h = await bufCurl(addr(module), 'grpc.health.v1.Health/Check', { service: component });
      assert.deepEqual(h.body, { status: 'SERVING' }, `${module} ${component}`);
    }
  });

  it('an unknown service name is NOT_FOUND on health', async () => {
    const r = await bufCurl(agent.address, 'grpc.health.v1.Health/Check', { service: 'no.such.Service' });
    assert.equal(r.error?.code, 'not_found');
  });

  it('a process that exits by itself becomes STOPPED; a crash says why', async () => {
    const ok = await api(agent, 'Create', { spec: { name: 'short', kind: 'KIND_PROCESS', process: { command: ['sleep', '0.3'] } }, wait: true });
    const bad = await api(agent, 'Create', { spec: { name: 'crash', kind: 'KIND_PROCESS', process: { command: ['sh', '-c', 'sleep 0.3; exit 3'] } }, wait: true });
    for (const [ack, err] of [[ok, ''], [bad, 'exited with code 3']] as const) {
      const o = await waitFor('STOPPED', async () => {
        const g = await api(agent, 'Get', { object_id: ack.body.objectId });
        return g.body.state === 'STATE_STOPPED' ? g.body : undefined;
      });
      assert.equal(o.lastError ?? '', err);
      const del = await api(agent, 'Delete', { object_id: ack.body.objectId, wait: true });
      assert.equal(del.body.state, 'STATE_DELETED');
    }
  });

  it('a workload that exits at once is STOPPED with its exit status, whatever the timing; FAILED only when it could not be started', async () => {
    const cases: Array<{ spec: object; exitCode: number; lastError: string }> = [];
    for (let i = 0; i < 4; i++) {
      cases.push({ spec: { kind: 'KIND_PROCESS', process: { command: ['true'] } }, exitCode: 0, lastError: '' });
      cases.push({ spec: { kind: 'KIND_PROCESS', process: { command: ['sh', '-c', 'exit 7'] } }, exitCode: 7, lastError: 'exited with code 7' });
      cases.push({ spec: { kind: 'KIND_PROCESS', process: { command: ['sh', '-c', 'kill -KILL $$'] } }, exitCode: 137, lastError: 'killed by SIGKILL' });
    }
    cases.push({ spec: { kind: 'KIND_CONTAINER', container: { image: BUSYBOX, command: ['true'] } }, exitCode: 0, lastError: '' });
    cases.push({ spec: { kind: 'KIND_CONTAINER', container: { image: BUSYBOX, command: ['sh', '-c', 'exit 7'] } }, exitCode: 7, lastError: 'exited with code 7' });
    const acks = await Promise.all(cases.map((c, i) => api(agent, 'Create', { spec: { name: `quick-${i}`, ...c.spec }, wait: true })));
    for (const [i, c] of cases.entries()) {
      const id = acks[i]!.body.objectId as string;
      assert.ok(id, JSON.stringify(acks[i]));
      const o = await waitFor(`quick-${i} STOPPED`, async () => {
        const g = await api(agent, 'Get', { object_id: id });
        assert.notEqual(g.body.state, 'STATE_FAILED', `quick-${i} ${JSON.stringify(c.spec)}: ${g.body.lastError}`);
        return g.body.state === 'STATE_STOPPED' ? g.body : undefined;
      });
      assert.equal(o.exitCode ?? 0, c.exitCode, `quick-${i} ${JSON.stringify(c.spec)}`);
      assert.equal(o.lastError ?? '', c.lastError, `quick-${i}`);
      assert.equal((await api(agent, 'Delete', { object_id: id, wait: true })).body.state, 'STATE_DELETED');
    }
    // Could not be started: FAILED, with the reason.
    const bad = await api(agent, 'Create', { spec: { name: 'no-cwd', kind: 'KIND_PROCESS', process: { command: ['true'], cwd: '/nonexistent-dir' } }, wait: true });
    assert.equal(bad.body.state, 'STATE_FAILED');
    assert.match(bad.body.error, /working directory/);
    await api(agent, 'Delete', { object_id: bad.body.objectId, wait: true });
  });

  it('a container killed from outside becomes STOPPED', async () => {
    const ack = await api(agent, 'Create', { spec: { name: 'victim', kind: 'KIND_CONTAINER', container: { image: BUSYBOX, command: ['sleep', '600'] } }, wait: true });
    const obj = (await api(agent, 'Get', { object_id: ack.body.objectId })).body;
    await sh('docker', ['kill', obj.runtimeId]);
    const o = await waitFor('STOPPED', async () => {
      const g = await api(agent, 'Get', { object_id: ack.body.objectId });
      return g.body.state === 'STATE_STOPPED' ? g.body : undefined;
    });
    assert.match(o.lastError, /exited with code 137/);
    assert.equal(o.exitCode, 137);
    const del = await api(agent, 'Delete', { object_id: ack.body.objectId, wait: true });
    assert.equal(del.body.state, 'STATE_DELETED');
    assert.equal(await sh('docker', ['ps', '-aq', '--filter', `id=${obj.runtimeId}`]), '');
  });

  it("a Delete's own stop is not logged as the workload stopping by itself", async () => {
    const said = (objectId: string): string[] => agent.logs.filter((l) => l.objectId === objectId && /stopped by/.test(String(l.msg))).map((l) => `${l.level} ${l.msg}`);
    for (const spec of [
      { name: 'deleted-c', kind: 'KIND_CONTAINER', container: { image: BUSYBOX, command: ['sleep', '600'] } },
      { name: 'deleted-p', kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] } },
    ]) {
      const ack = await api(agent, 'Create', { spec, wait: true });
      const objectId = ack.body.objectId as string;
      assert.equal((await api(agent, 'Delete', { object_id: objectId, wait: true })).body.state, 'STATE_DELETED');
      await new Promise((r) => setTimeout(r, 500)); // the runtime's stop event comes after
      assert.equal(said(objectId).some((l) => l.includes('stopped by itself')), false, `${spec.kind}: ${said(objectId).join('; ')}`);
    }
  });
});

describe('without Docker', () => {
  let agent: Agent;
  before(async () => (agent = await startAgent({ AGENT_DOCKER_SOCKET: '/nonexistent/docker.sock' })));
  after(async () => agent?.stop());

  it('the manager says Docker is not serving', async () => {
    const addr = (agent.logs.find((l) => l.msg === 'grpc server listening' && l.module === 'manager') as unknown as { address: string }).address;
    const h = await bufCurl(addr, 'grpc.health.v1.Health/Check', { service: 'agent.docker' });
    assert.deepEqual(h.body, { status: 'NOT_SERVING' });
  });

  it('container creates fail clearly and everything else works', async () => {
    const c = await api(agent, 'Create', { spec: { name: 'c', kind: 'KIND_CONTAINER', container: { image: BUSYBOX } }, wait: true });
    assert.equal(c.body.state, 'STATE_FAILED');
    assert.match(c.body.error, /docker is not reachable at \/nonexistent\/docker\.sock/);
    const p = await api(agent, 'Create', { spec: { name: 'p', kind: 'KIND_PROCESS', process: { command: ['sleep', '60'] } }, wait: true });
    assert.equal(p.body.state, 'STATE_RUNNING');
    const once = await api(agent, 'PushOnce', { object_id: p.body.objectId });
    assert.ok(once.ok);
    await api(agent, 'Delete', { object_id: p.body.objectId, wait: true });
    await api(agent, 'Delete', { object_id: c.body.objectId, wait: true });
  });
});

describe('what the agent loads', () => {
  // Every module loaded stays in the heap, and every major GC marks it: the
  // SDK and the Kubernetes client were 40 of an idle agent's 65 MB.
  it('without an OTLP endpoint or a Kubernetes object, neither the OpenTelemetry SDK nor the Kubernetes client', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-loads-'));
    const hook = path.join(dir, 'hook.js');
    const out = path.join(dir, 'loaded.txt');
    fs.writeFileSync(hook, `const M = require('module'); const load = M._load; const seen = new Set();
M._load = function (request, ...rest) { seen.add(request); return load.call(this, request, ...rest); };
process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, [...seen].join('\\n')));`);
    const agent = await startAgent({}, undefined, ['env', `NODE_OPTIONS=--require=${hook}`]);
    try {
      const c = await api(agent, 'Create', { spec: { name: 'c', kind: 'KIND_CONTAINER', container: { image: BUSYBOX, command: ['sleep', '60'] } }, wait: true });
      assert.equal(c.body.state, 'STATE_RUNNING');
      await api(agent, 'Delete', { object_id: c.body.objectId, wait: true });
    } finally {
      await agent.stop();
    }
    const loaded = fs.readFileSync(out, 'utf8').split('\n');
    assert.ok(loaded.includes('@agent/telemetry') && loaded.includes('dockerode'), 'the hook saw the agent load');
    for (const heavy of ['@opentelemetry/sdk-node', '@kubernetes/client-node']) assert.ok(!loaded.includes(heavy), `${heavy} was loaded`);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('SIGTERM', () => {
  it('exits within 10 s, flushing reports, and leaves workloads running', async () => {
    const agent = await startAgent();
    const ctr = await api(agent, 'Create', { spec: { name: 'stays', kind: 'KIND_CONTAINER', container: { image: BUSYBOX, command: ['sleep', '600'] } }, wait: true });
    const proc = await api(agent, 'Create', { spec: { name: 'stays-p', kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] } }, wait: true });
    const cid = (await api(agent, 'Get', { object_id: ctr.body.objectId })).body.runtimeId;
    const pid = (await api(agent, 'Get', { object_id: proc.body.objectId })).body.pid;
    await api(agent, 'PushOn', { object_id: proc.body.objectId, interval_ms: 100, wait: true });
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const code = await agent.stop('SIGTERM');
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 10_000);
    assert.ok(agent.logs.some((l) => l.msg === 'stopped'));
    assert.equal(await sh('docker', ['inspect', '-f', '{{.State.Running}}', cid]), 'true');
    assert.ok(isAlive(pid));
    const lines = fs.readFileSync(path.join(agent.dataDir, 'reports.jsonl'), 'utf8').trim().split('\n');
    assert.ok(lines.length >= 2);
    // Clean up what the agent deliberately left running.
    await sh('docker', ['rm', '-f', cid]);
    process.kill(pid, 'SIGKILL');
    await waitFor('process gone', () => !isAlive(pid) || undefined);
    for (const ctrl of ['memory', 'cpu', 'cpuacct', 'pids', 'blkio', '']) {
      const dir = path.join('/sys/fs/cgroup', ctrl, agent.cgroupParent);
      if (fs.existsSync(dir)) for (const sub of fs.readdirSync(dir, { withFileTypes: true })) if (sub.isDirectory()) fs.rmdirSync(path.join(dir, sub.name));
    }
    removeCgroupParent(agent.cgroupParent);
  });
});
