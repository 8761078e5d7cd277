// Nobody gets in without a key: the real agent, called as root and as real
// unprivileged users made here with useradd.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { v1 } from '@agent/proto';
import { api, bufCurl, freePort, ROOT, sh, startAgent, startSink, waitFor, type Agent, type LogLine } from '@agent/testkit';

const INTRUDER = 'agent-e2e-intruder';
const MEMBER = 'agent-e2e-member';
const SOCK_GROUP = 'agent-e2e-sock';

/** A system user (and group) for the test, made once per machine. */
function ensureUser(name: string): { uid: number; gid: number } {
  if (spawnSync('id', ['-u', name]).status !== 0) execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', name]);
  return { uid: Number(execFileSync('id', ['-u', name], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', name], { encoding: 'utf8' })) };
}

function ensureGroup(name: string): number {
  if (spawnSync('getent', ['group', name]).status !== 0) execFileSync('groupadd', ['--system', name]);
  return Number(execFileSync('getent', ['group', name], { encoding: 'utf8' }).split(':')[2]);
}

/** Runs a Node snippet as uid:gid (no supplementary groups); returns its stdout. */
function nodeAs(uid: number, gid: number, script: string, input = ''): string {
  const r = spawnSync(process.execPath, ['-e', script], { uid, gid, input, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, cwd: '/' });
  if (r.status !== 0) throw new Error(`node as ${uid}:${gid} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** What opening a unix socket gives this user: "connected" or the errno code. */
function connectAs(uid: number, gid: number, socket: string): string {
  return nodeAs(uid, gid, `require('net').connect(${JSON.stringify(socket)}).on('connect', function () { console.log('connected'); this.destroy(); }).on('error', (e) => console.log(e.code))`);
}

function procStatus(pid: number, field: string): string {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
  return (line ?? '').slice(field.length + 1).trim();
}

/** Waits for a log line of the agent's; fails with the last lines if it never comes. */
async function logged(agent: Agent, match: (l: LogLine) => boolean): Promise<void> {
  await waitFor('log line', () => agent.logs.some(match) || undefined, 5_000).catch(() => {
    throw new Error(`no such log line; last: ${JSON.stringify(agent.logs.slice(-5))}`);
  });
}

interface Obj {
  objectId: string;
  state: string;
  pid?: number;
  spec: { process?: { env?: string[]; user?: string } };
}

const spec = (name: string, process: object) => ({ spec: { name, kind: 'KIND_PROCESS', process }, wait: true });

describe('authentication and least privilege', () => {
  let agent: Agent;
  let intruder: { uid: number; gid: number };
  let sockGid: number;
  const made: string[] = [];

  before(async () => {
    intruder = ensureUser(INTRUDER);
    ensureUser(MEMBER);
    sockGid = ensureGroup(SOCK_GROUP);
    agent = await startAgent({ AGENT_SOCKET_GROUP: SOCK_GROUP });
  });

  after(async () => {
    for (const id of made) await api(agent, 'Delete', { object_id: id, wait: true }).catch(() => undefined);
    await agent.stop();
  });

  it('an unprivileged user gets UNAUTHENTICATED over TCP and creates nothing', async () => {
    const create = spec('intruder', { command: ['/bin/sh', '-c', 'id > /tmp/agent-e2e-owned'] });
    for (const token of [undefined, 'not-a-token', `${agent.token}x`]) {
      for (const [method, body] of [['Create', create], ['List', {}], ['Delete', { object_id: 'obj-x' }]] as const) {
        const r = await bufCurl(agent.address, `agent.v1.AgentService/${method}`, body, { token, ...intruder });
        assert.equal(r.error?.code, 'unauthenticated', `${method} with ${token ?? 'no token'}: ${JSON.stringify(r)}`);
      }
    }
    // Health and reflection stay open: that is how buf curl found the methods above.
    const health = await bufCurl(agent.address, 'grpc.health.v1.Health/Check', { service: 'agent.v1.AgentService' }, intruder);
    assert.deepEqual(health.body, { status: 'SERVING' });
    const list = await api(agent, 'List', { include_deleted: true });
    assert.deepEqual(list.body.objects ?? [], []);
    assert.equal(fs.existsSync('/tmp/agent-e2e-owned'), false);
  });

  it('the unix socket is 0660 to its group: outsiders cannot open it, members are admins', async () => {
    const st = fs.statSync(agent.socket);
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.gid, sockGid);
    assert.equal(connectAs(intruder.uid, intruder.gid, agent.socket), 'EACCES');
    // A member of AGENT_SOCKET_GROUP (as its primary group here) reaches the socket and is an admin, no token needed.
    const member = { uid: Number(execFileSync('id', ['-u', MEMBER], { encoding: 'utf8' })), gid: sockGid };
    assert.equal(connectAs(member.uid, member.gid, agent.socket), 'connected');
    const r = await bufCurl(`unix:${agent.socket}`, 'agent.v1.AgentService/Create', spec('via-socket', { command: ['/bin/sleep', '600'] }), member);
    assert.equal(r.body?.state, 'STATE_RUNNING', JSON.stringify(r));
    made.push(r.body.objectId as string);
  });

  it('tokens are made at first start, 0600 in a 0700 directory', () => {
    const dir = path.join(agent.dataDir, 'auth');
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    for (const f of ['admin.token', 'reader.token', 'internal.token']) {
      assert.equal(fs.statSync(path.join(dir, f)).mode & 0o777, 0o600, f);
      assert.ok(fs.readFileSync(path.join(dir, f), 'utf8').trim().length >= 32, f);
    }
    assert.notEqual(agent.token, agent.readerToken);
  });

  it('admin token: everything; reader token: reads only, env values redacted', async () => {
    const c = await api(agent, 'Create', spec('secretive', { command: ['/bin/sleep', '600'], env: ['DB_PASSWORD=hunter2', 'MODE=x'] }));
    assert.equal(c.body?.state, 'STATE_RUNNING', JSON.stringify(c));
    const id = c.body.objectId as string;
    made.push(id);
    const asAdmin = (await api(agent, 'Get', { object_id: id })).body as Obj;
    assert.deepEqual(asAdmin.spec.process?.env, ['DB_PASSWORD=hunter2', 'MODE=x']);

    const reader = agent.readerToken;
    const got = await api(agent, 'Get', { object_id: id }, reader);
    assert.ok(got.ok, JSON.stringify(got));
    assert.deepEqual((got.body as Obj).spec.process?.env, ['DB_PASSWORD=<redacted>', 'MODE=<redacted>']);
    const list = await api(agent, 'List', {}, reader);
    assert.ok(!JSON.stringify(list.body).includes('hunter2'), 'List leaks an env value');
    assert.ok(JSON.stringify(list.body).includes('DB_PASSWORD='), 'List keeps env names');
    assert.ok((await api(agent, 'GetEvent', { event_id: c.body.eventId }, reader)).ok);
    const once = await api(agent, 'PushOnce', { object_id: id }, reader);
    assert.ok(once.ok, JSON.stringify(once));

    const mutating: Array<[string, object]> = [
      ['Create', spec('reader-made', { command: ['/bin/sleep', '1'] })],
      ['Update', { object_id: id, resources: { memory_bytes: 64 * 1024 * 1024 } }],
      ['Delete', { object_id: id }],
      ['PushOn', { object_id: id, interval_ms: 1000 }],
      ['PushOff', { object_id: id }],
    ];
    for (const [method, body] of mutating) {
      const r = await api(agent, method, body, reader);
      assert.equal(r.error?.code, 'permission_denied', `${method}: ${JSON.stringify(r)}`);
    }
    assert.equal((await api(agent, 'Get', { object_id: id })).body.state, 'STATE_RUNNING', 'the reader changed nothing');

    // Watch (a stream) redacts too.
    const client = new v1.AgentServiceClient(agent.address, credentials.createInsecure());
    const md = new Metadata();
    md.set('authorization', `Bearer ${reader}`);
    const first = await new Promise<v1.WatchEvent>((resolve, reject) => {
      const stream = client.watch({ objectId: id }, md);
      stream.once('data', (e: v1.WatchEvent) => (resolve(e), stream.cancel()));
      stream.once('error', (e: ServiceError) => e.code !== status.CANCELLED && reject(e));
    });
    client.close();
    assert.deepEqual(first.object?.spec?.process?.env, ['DB_PASSWORD=<redacted>', 'MODE=<redacted>']);

    // Every mutating call is in the log with its caller (read from the agent's stderr, so it may trail the answer).
    await logged(agent, (l) => l.msg === 'mutating call' && l.method === 'Create' && l.role === 'admin' && l.via === 'token');
    await logged(agent, (l) => l.msg === 'call refused' && l.method === '/agent.v1.AgentService/Delete' && l.role === 'reader');
  });

  it('a process runs as nobody by default, as the user it names otherwise; an unknown user is refused', async () => {
    const byDefault = await api(agent, 'Create', spec('as-nobody', { command: ['/bin/sleep', '600'] }));
    assert.equal(byDefault.body?.state, 'STATE_RUNNING', JSON.stringify(byDefault));
    made.push(byDefault.body.objectId as string);
    const o = (await api(agent, 'Get', { object_id: byDefault.body.objectId })).body as Obj;
    assert.equal(o.spec.process?.user, 'nobody');
    assert.equal(procStatus(o.pid!, 'Uid'), '65534\t65534\t65534\t65534');
    assert.equal(procStatus(o.pid!, 'Groups'), '');

    const numeric = await api(agent, 'Create', spec('as-1234', { command: ['/bin/sleep', '600'], user: '1234:1234' }));
    assert.equal(numeric.body?.state, 'STATE_RUNNING', JSON.stringify(numeric));
    made.push(numeric.body.objectId as string);
    const n = (await api(agent, 'Get', { object_id: numeric.body.objectId })).body as Obj;
    assert.equal(procStatus(n.pid!, 'Uid'), '1234\t1234\t1234\t1234');
    assert.equal(procStatus(n.pid!, 'Gid'), '1234\t1234\t1234\t1234');

    const unknown = await api(agent, 'Create', spec('as-nobody-known', { command: ['/bin/sleep', '600'], user: 'no-such-user-e2e' }));
    assert.equal(unknown.error?.code, 'invalid_argument');
    assert.match(unknown.error?.message ?? '', /^spec\.process\.user:/);
  });

  it('a library injected with LD_PRELOAD runs only inside the object cgroup, as its user', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-e2e-preload-'));
    fs.chmodSync(dir, 0o777);
    const src = path.join(dir, 'spy.c');
    const lib = path.join(dir, 'spy.so');
    const out = path.join(dir, 'seen');
    fs.writeFileSync(src, `#include <stdio.h>
#include <unistd.h>
#include <string.h>
__attribute__((constructor)) static void spy(void) {
  char line[512] = ""; FILE *c = fopen("/proc/self/cgroup", "r");
  while (c && fgets(line, sizeof line, c)) if (strstr(line, ":memory:") || strncmp(line, "0::", 3) == 0) break;
  if (c) fclose(c);
  FILE *f = fopen("${out}", "a"); if (!f) return;
  fprintf(f, "%d %d %s", (int)getpid(), (int)getuid(), line); fclose(f);
}
`);
    if (spawnSync('cc', ['-shared', '-fPIC', '-o', lib, src]).status !== 0) return t.skip('no C compiler to build the preload library');
    fs.chmodSync(lib, 0o755);
    const r = await api(agent, 'Create', spec('preloaded', { command: ['/bin/sleep', '600'], env: [`LD_PRELOAD=${lib}`], user: '1234:1234' }));
    assert.equal(r.body?.state, 'STATE_RUNNING', JSON.stringify(r));
    made.push(r.body.objectId as string);
    const o = (await api(agent, 'Get', { object_id: r.body.objectId })).body as Obj & { runtimeId: string };
    const lines = await waitFor('the library ran', () => {
      const text = fs.existsSync(out) ? fs.readFileSync(out, 'utf8').trim() : '';
      return text === '' ? undefined : text.split('\n');
    });
    for (const l of lines) {
      const [, uid, cg = ''] = l.split(' ');
      assert.equal(uid, '1234', `ran as another user: ${l}`);
      assert.ok(cg.trim().endsWith(o.runtimeId), `ran outside ${o.runtimeId}: ${l}`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an unprivileged user can read no file under the data directory', () => {
    const files: string[] = [];
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        files.push(p);
        if (e.isDirectory()) walk(p);
      }
    };
    walk(agent.dataDir);
    assert.ok(files.some((f) => f.endsWith(`${path.sep}state${path.sep}agent.mdb`)), 'the store\'s database is there');
    assert.ok(files.some((f) => f.endsWith('.log')), 'process logs exist');
    for (const f of files) {
      const st = fs.lstatSync(f);
      if (st.isDirectory()) assert.equal(st.mode & 0o077, 0, `${f} is open to others`);
      else if (st.isFile()) assert.equal(st.mode & 0o077, 0, `${f} is open to others`);
    }
    const readable = nodeAs(intruder.uid, intruder.gid, `
      const fs = require('fs'); let n = [];
      for (const f of JSON.parse(require('fs').readFileSync(0, 'utf8'))) {
        try { fs.statSync(f).isDirectory() ? fs.readdirSync(f) : fs.readFileSync(f); n.push(f); } catch {}
      }
      console.log(JSON.stringify(n));`, JSON.stringify([agent.dataDir, ...files]));
    assert.deepEqual(JSON.parse(readable), []);
  });
});

describe('listeners that would expose the agent', () => {
  it('a non-loopback TCP listener without TLS refuses to start, naming the variables', async () => {
    const port = await freePort();
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-e2e-'));
    const child = spawn(process.execPath, [path.join(ROOT, 'apps/daemon/dist/main.js')], {
      env: { ...process.env, AGENT_LISTEN: `0.0.0.0:${port}`, AGENT_DATA_DIR: dataDir, AGENT_DISCOVER: 'off' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    assert.notEqual(code, 0);
    assert.match(err, /AGENT_LISTEN/);
    assert.match(err, /AGENT_TLS_CERT/);
    assert.match(err, /AGENT_TLS_KEY/);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('with mTLS a client without a certificate is refused; with one it is served in its role', async () => {
    const certs = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-e2e-certs-'));
    await sh('bash', [path.join(ROOT, 'tools/make-certs.sh'), certs]);
    const port = await freePort();
    const agent = await startAgent({
      AGENT_LISTEN: `0.0.0.0:${port}`,
      AGENT_TLS_CERT: path.join(certs, 'server.crt'),
      AGENT_TLS_KEY: path.join(certs, 'server.key'),
      AGENT_TLS_CLIENT_CA: path.join(certs, 'ca.crt'),
    });
    const read = (f: string): Buffer => fs.readFileSync(path.join(certs, f));
    const call = (creds: ReturnType<typeof credentials.createSsl>, method: 'list' | 'create' | 'pushOff', req: object): Promise<number> =>
      new Promise((resolve) => {
        const client = new v1.AgentServiceClient(`127.0.0.1:${port}`, creds);
        const fn = client[method].bind(client) as unknown as (r: object, md: Metadata, o: object, cb: (e: ServiceError | null) => void) => void;
        fn(req, new Metadata(), { deadline: Date.now() + 5_000 }, (e) => {
          client.close();
          resolve(e ? e.code : status.OK);
        });
      });
    try {
      const ca = read('ca.crt');
      assert.notEqual(await call(credentials.createSsl(ca), 'list', v1.ListRequest.fromPartial({})), status.OK, 'no client certificate');
      assert.equal(await call(credentials.createSsl(ca, read('admin.key'), read('admin.crt')), 'list', v1.ListRequest.fromPartial({})), status.OK);
      const reader = credentials.createSsl(ca, read('reader.key'), read('reader.crt'));
      assert.equal(await call(reader, 'list', v1.ListRequest.fromPartial({})), status.OK);
      assert.equal(await call(reader, 'create', v1.CreateRequest.fromPartial({ spec: { name: 'x', kind: v1.Kind.KIND_CGROUP, cgroup: { path: 'x' } } })), status.PERMISSION_DENIED);
      // A certificate from another CA is refused too.
      const other = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-e2e-certs-'));
      await sh('bash', [path.join(ROOT, 'tools/make-certs.sh'), other]);
      assert.notEqual(await call(credentials.createSsl(ca, fs.readFileSync(path.join(other, 'admin.key')), fs.readFileSync(path.join(other, 'admin.crt'))), 'list', v1.ListRequest.fromPartial({})), status.OK);
      fs.rmSync(other, { recursive: true, force: true });
      // Both show in the log with the certificate's subject: a refused attempt, an admin's call.
      await logged(agent, (l) => l.msg === 'call refused' && l.via === 'certificate' && l.subject === 'reader' && l.role === 'reader');
      const admin = credentials.createSsl(ca, read('admin.key'), read('admin.crt'));
      assert.equal(await call(admin, 'pushOff', v1.PushOffRequest.fromPartial({ objectId: 'obj-none' })), status.NOT_FOUND);
      await logged(agent, (l) => l.msg === 'mutating call' && l.via === 'certificate' && l.subject === 'admin' && l.role === 'admin' && l.method === 'PushOff');
    } finally {
      await agent.stop();
      fs.rmSync(certs, { recursive: true, force: true });
    }
  });
});

describe('policies of a whole agent', () => {
  it('AGENT_PROCESS_ALLOW: an executable outside it is PERMISSION_DENIED, one inside runs', async () => {
    const agent = await startAgent({ AGENT_PROCESS_ALLOW: '/bin/sleep' });
    try {
      const denied = await api(agent, 'Create', spec('env-runner', { command: ['/usr/bin/env'] }));
      assert.equal(denied.error?.code, 'permission_denied', JSON.stringify(denied));
      assert.match(denied.error?.message ?? '', /spec\.process\.command\[0\]/);
      const shell = await api(agent, 'Create', spec('shell', { command: ['sh', '-c', 'sleep 60'] }));
      assert.equal(shell.error?.code, 'permission_denied', JSON.stringify(shell));
      const ok = await api(agent, 'Create', spec('sleeper', { command: ['sleep', '60'] }));
      assert.equal(ok.body?.state, 'STATE_RUNNING', JSON.stringify(ok));
      await api(agent, 'Delete', { object_id: ok.body.objectId, wait: true });
    } finally {
      await agent.stop();
    }
  });

  it('Bus Out: a sink with a token file takes pushes only from an agent that presents it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-e2e-sink-'));
    const tokenFile = path.join(dir, 'sink.token');
    const sink = await startSink({ tokenFile });
    assert.equal(fs.statSync(tokenFile).mode & 0o777, 0o600);
    const anonymous = await bufCurl(sink.address, 'agent.v1.ReportSink/RegisterHost', { host_id: 'intruder' });
    assert.equal(anonymous.error?.code, 'unauthenticated', JSON.stringify(anonymous));
    const agent = await startAgent({ AGENT_UPSTREAM: sink.address, AGENT_UPSTREAM_TOKEN_FILE: tokenFile, AGENT_HEARTBEAT_MS: '200' });
    try {
      await waitFor('host registered', () => sink.lines.find((l) => l.type === 'host' && l.host?.hostId === agent.hostId));
      await waitFor('heartbeat reports', () => sink.lines.find((l) => l.type === 'report'));
      assert.equal(sink.lines.filter((l) => l.hostId === 'intruder' || l.host?.hostId === 'intruder').length, 0);
    } finally {
      await agent.stop();
      await sink.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
