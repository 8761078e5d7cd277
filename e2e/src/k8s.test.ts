// Kubernetes workloads as objects, through the public API (buf curl, the
// grpcurl stand-in), on the FAKE apiserver of libs/testkit (no real
// Kubernetes API server can run here): a Deployment reaches RUNNING, scales
// by Update, shows why it is not ready, is deleted with its pods, and is
// taken back after a SIGKILL. Bad input names its field.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { api, startAgent, startFakeKube, waitFor, type Agent, type FakeKube, type KubeObject } from '@agent/testkit';

const OBJECT_LABEL = 'io.agent/object-id';

function deployment(name: string, image = 'nginx:1.27'): string {
  // YAML, as a user writes it.
  return [
    'apiVersion: apps/v1',
    'kind: Deployment',
    'metadata:',
    `  name: ${name}`,
    'spec:',
    '  replicas: 1',
    '  selector:',
    '    matchLabels:',
    `      app: ${name}`,
    '  template:',
    '    metadata:',
    '      labels:',
    `        app: ${name}`,
    '    spec:',
    '      containers:',
    '        - name: web',
    `          image: ${image}`,
    '          env:',
    '            - name: PASSWORD',
    '              value: hunter2',
  ].join('\n');
}

const labelled = (kube: FakeKube, kind: string, objectId: string): KubeObject[] => kube.objects(kind).filter((o) => o.metadata.labels?.[OBJECT_LABEL] === objectId);

describe('Kubernetes workloads through the API on the FAKE apiserver', () => {
  let kube: FakeKube;
  let agent: Agent;
  const env = (): Record<string, string> => ({ AGENT_KUBECONFIG: kube.kubeconfig, AGENT_K8S_READY_TIMEOUT_MS: '3000' });
  before(async () => {
    kube = await startFakeKube({ phaseMs: 50 });
    agent = await startAgent(env());
  });
  after(async () => {
    await agent?.stop();
    await kube?.close();
  });

  it('a Deployment reaches RUNNING, scales by Update, shows why it is not ready, and is deleted with its pods (FAKE apiserver)', async () => {
    const made = await api(agent, 'Create', { spec: { name: 'web', kind: 'KIND_K8S', resources: { cpus: 0.5, memory_bytes: String(64 << 20) }, k8s: { manifest: deployment('web'), wait_ready: true } }, wait: true });
    assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made.body));
    const id = made.body.objectId as string;
    const got = (await api(agent, 'Get', { object_id: id })).body;
    assert.equal(got.runtimeId, 'fake/default/Deployment/web');
    assert.deepEqual({ cpus: got.appliedResources.cpus, memory: got.appliedResources.memoryBytes }, { cpus: 0.5, memory: String(64 << 20) });
    const read = (await api(agent, 'Get', { object_id: id }, agent.readerToken)).body;
    assert.ok(JSON.stringify(got.spec).includes('hunter2') && !JSON.stringify(read.spec).includes('hunter2'), 'a reader does not see env values');
    assert.match(read.spec.k8s.manifest as string, /"name":"PASSWORD","value":"<redacted>"/);
    const [dep] = labelled(kube, 'Deployment', id);
    assert.ok(dep, 'the Deployment carries the object label');
    const container = (dep.spec as { template: { spec: { containers: Array<{ resources: { limits: Record<string, string> } }> } } }).template.spec.containers[0]!;
    assert.deepEqual(container.resources.limits, { cpu: '500m', memory: String(64 << 20) });
    assert.equal(labelled(kube, 'Pod', id).length, 1, 'its pod carries the label too');
    const managers = (dep.metadata.managedFields as Array<{ manager: string; operation: string }>).filter((m) => m.operation === 'Apply').map((m) => m.manager);
    assert.deepEqual(managers, ['agent'], 'applied server-side by the field manager agent');

    const scaled = await api(agent, 'Update', { object_id: id, k8s: { replicas: 3 }, wait: true });
    assert.equal(scaled.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(scaled.body));
    const afterScale = (await api(agent, 'Get', { object_id: id })).body;
    assert.equal(afterScale.state, 'STATE_RUNNING', JSON.stringify(afterScale));
    assert.match(afterScale.spec.k8s.manifest as string, /"replicas":3/, 'the spec follows the update');
    await waitFor('3 ready pods', () => labelled(kube, 'Pod', id).filter((p) => (p.status as { phase?: string }).phase === 'Running').length === 3 || undefined);

    // An image that cannot be pulled: PENDING, with the kubelet's reason; a good one brings it back.
    const broken = await api(agent, 'Update', { object_id: id, k8s: { image: 'registry.example/missing:1' }, wait: true });
    assert.equal(broken.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(broken.body));
    const pending = await waitFor('PENDING with a reason', async () => {
      const o = (await api(agent, 'Get', { object_id: id })).body;
      return o.state === 'STATE_PENDING' && /ErrImagePull|ImagePullBackOff/.test(o.lastError as string) ? o : undefined;
    });
    assert.equal(pending.state, 'STATE_PENDING');
    const fixed = await api(agent, 'Update', { object_id: id, k8s: { image: 'nginx:1.28', container: 'web' }, wait: true });
    assert.equal(fixed.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(fixed.body));
    await waitFor('RUNNING again', async () => ((await api(agent, 'Get', { object_id: id })).body.state === 'STATE_RUNNING' ? true : undefined));

    const gone = await api(agent, 'Delete', { object_id: id, wait: true });
    assert.equal(gone.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(gone.body));
    assert.equal(labelled(kube, 'Deployment', id).length, 0, 'the Deployment is gone');
    assert.equal(labelled(kube, 'ReplicaSet', id).length + labelled(kube, 'Pod', id).length, 0, 'and what it made (foreground)');
    assert.equal((await api(agent, 'Get', { object_id: id })).body.state, 'STATE_DELETED');
  });

  it('a Job runs to completion and is STOPPED; a failing one is FAILED (FAKE apiserver)', async () => {
    const job = (name: string, image: string): string =>
      JSON.stringify({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name }, spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image }] } } } });
    const ok = await api(agent, 'Create', { spec: { name: 'job-ok', kind: 'KIND_K8S', k8s: { manifest: job('job-ok', 'busybox:1.36'), wait_ready: false } }, wait: true });
    assert.ok(['STATE_PENDING', 'STATE_RUNNING', 'STATE_STOPPED'].includes(ok.body.state), JSON.stringify(ok.body));
    await waitFor('job-ok STOPPED', async () => ((await api(agent, 'Get', { object_id: ok.body.objectId })).body.state === 'STATE_STOPPED' ? true : undefined));
    const bad = await api(agent, 'Create', { spec: { name: 'job-bad', kind: 'KIND_K8S', k8s: { manifest: job('job-bad', 'busybox:fail'), wait_ready: false } }, wait: true });
    const failed = await waitFor('job-bad FAILED', async () => {
      const o = (await api(agent, 'Get', { object_id: bad.body.objectId })).body;
      return o.state === 'STATE_FAILED' ? o : undefined;
    });
    assert.ok(failed.lastError, 'says why');
    for (const o of [ok.body.objectId, bad.body.objectId]) assert.equal((await api(agent, 'Delete', { object_id: o, wait: true })).body.status, 'EVENT_STATUS_SUCCEEDED');
  });

  it('bad input names its field (FAKE apiserver)', async () => {
    const create = (k8s: Record<string, unknown>, extra: Record<string, unknown> = {}) => api(agent, 'Create', { spec: { name: `bad-${Math.random().toString(36).slice(2, 8)}`, kind: 'KIND_K8S', k8s, ...extra }, wait: true });
    const cases: Array<[string, Promise<{ ok: boolean; error?: { code: string; message: string } }>, string, RegExp]> = [
      ['a Service', create({ manifest: JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } }) }), 'invalid_argument', /spec\.k8s\.manifest\.kind/],
      ['two documents', create({ manifest: `${deployment('a')}\n---\n${deployment('b')}` }), 'invalid_argument', /spec\.k8s\.manifest: must hold exactly one object/],
      ['no manifest', create({}), 'invalid_argument', /spec\.k8s\.manifest/],
      ['a namespace the manifest contradicts', create({ manifest: deployment('a').replace('  name: a', '  name: a\n  namespace: other'), namespace: 'default' }), 'invalid_argument', /spec\.k8s\.namespace/],
      ['a kubeconfig the agent may not use', create({ manifest: deployment('a'), kubeconfig: '/etc/passwd' }), 'permission_denied', /spec\.k8s\.kubeconfig/],
      ['a limit Kubernetes containers do not have', create({ manifest: deployment('a') }, { resources: { pids_limit: 10 } }), 'invalid_argument', /spec\.resources\.pids_limit/],
    ];
    for (const [what, call, code, field] of cases) {
      const r = await call;
      assert.equal(r.ok, false, what);
      assert.equal(r.error?.code, code, `${what}: ${JSON.stringify(r.error)}`);
      assert.match(r.error?.message ?? '', field, what);
    }
    // A manifest the cluster refuses (its selector misses its template): the create fails naming the cluster's field.
    const refused = await create({ manifest: deployment('refused').replace(/app: refused\n {4}spec/, 'app: other\n    spec') });
    assert.equal(refused.ok, true);
    const ev = await api(agent, 'Get', { object_id: (refused as { body: { objectId: string } }).body.objectId });
    assert.equal(ev.body.state, 'STATE_FAILED', JSON.stringify(ev.body));
    assert.match(ev.body.lastError as string, /spec\.k8s\.manifest\.spec\.template\.metadata\.labels/);

    const proc = await api(agent, 'Create', { spec: { name: 'not-k8s', kind: 'KIND_PROCESS', process: { command: ['sleep', '60'] } }, wait: true });
    const wrongKind = await api(agent, 'Update', { object_id: proc.body.objectId, k8s: { replicas: 2 } });
    assert.equal(wrongKind.error?.code, 'invalid_argument', JSON.stringify(wrongKind));
    assert.match(wrongKind.error?.message ?? '', /^k8s: /);
    await api(agent, 'Delete', { object_id: proc.body.objectId, wait: true });
  });

  it('after a SIGKILL the agent takes its Deployment back, and forgets one deleted meanwhile (FAKE apiserver)', async () => {
    const keep = await api(agent, 'Create', { spec: { name: 'keep', kind: 'KIND_K8S', k8s: { manifest: deployment('keep'), wait_ready: true } }, wait: true });
    const lose = await api(agent, 'Create', { spec: { name: 'lose', kind: 'KIND_K8S', k8s: { manifest: deployment('lose'), wait_ready: true } }, wait: true });
    assert.equal(keep.body.state, 'STATE_RUNNING');
    assert.equal(lose.body.state, 'STATE_RUNNING');
    assert.equal(await agent.stop('SIGKILL'), null);
    const del = await fetch(`${kube.url}/apis/apps/v1/namespaces/default/deployments/lose?propagationPolicy=Foreground`, { method: 'DELETE', headers: { authorization: `Bearer ${kube.token}` } });
    assert.equal(del.status, 200);
    await waitFor('lose gone', () => (labelled(kube, 'Deployment', lose.body.objectId).length === 0 ? true : undefined));
    agent = await startAgent(env(), agent);
    const back = (await api(agent, 'Get', { object_id: keep.body.objectId })).body;
    assert.equal(back.state, 'STATE_RUNNING', JSON.stringify(back));
    assert.equal(back.runtimeId, 'fake/default/Deployment/keep');
    assert.equal((await api(agent, 'Get', { object_id: lose.body.objectId })).body.state, 'STATE_DELETED');
    // Taken back: it follows the cluster and takes updates again.
    const scaled = await api(agent, 'Update', { object_id: keep.body.objectId, k8s: { replicas: 2 }, wait: true });
    assert.equal(scaled.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(scaled.body));
    await waitFor('2 pods', () => (labelled(kube, 'Pod', keep.body.objectId).length === 2 ? true : undefined));
    assert.equal((await api(agent, 'Delete', { object_id: keep.body.objectId, wait: true })).body.status, 'EVENT_STATUS_SUCCEEDED');
    assert.equal(labelled(kube, 'Pod', keep.body.objectId).length, 0);
  });

  it('the agent kubeconfig may be replaced by one in AGENT_KUBECONFIG_ALLOW (FAKE apiserver)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-kube-allow-'));
    const other = path.join(dir, 'config');
    fs.copyFileSync(kube.kubeconfig, other);
    const allowed = await startAgent({ AGENT_KUBECONFIG: path.join(dir, 'absent'), AGENT_KUBECONFIG_ALLOW: dir });
    try {
      const made = await api(allowed, 'Create', { spec: { name: 'allowed', kind: 'KIND_K8S', k8s: { manifest: deployment('allowed'), kubeconfig: other, wait_ready: true } }, wait: true });
      assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made.body));
      assert.equal((await api(allowed, 'Delete', { object_id: made.body.objectId, wait: true })).body.status, 'EVENT_STATUS_SUCCEEDED');
      // The default kubeconfig is absent: an object without one fails clearly, as its event.
      const none = await api(allowed, 'Create', { spec: { name: 'nocfg', kind: 'KIND_K8S', k8s: { manifest: deployment('nocfg') } }, wait: true });
      const o = (await api(allowed, 'Get', { object_id: none.body.objectId })).body;
      assert.equal(o.state, 'STATE_FAILED');
      assert.match(o.lastError as string, /spec\.k8s\.kubeconfig: cannot read/);
    } finally {
      await allowed.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
