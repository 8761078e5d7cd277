// The helm driver: charts rendered by the real helm 3.17 binary, applied to
// the FAKE apiserver of libs/testkit (no real cluster can run here). Then the
// pure parts: the spec's checks, its changes and what a reader sees.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from '@agent/grpc-kit';
import { KubeLabel } from '@agent/option';
import { kubeTools, startFakeKube, waitFor, type FakeKube } from '@agent/testkit';
import { CgroupFs } from '../cgroup-fs';
import { NO_LIMITS } from '../dimensions';
import type { KubeObject } from '../k8s/workload';
import type { RuntimeEvent, WorkloadSpec } from '../types';
import { HelmDriver, inventoryName, type HelmDriverOptions } from './helm-driver';
import { admitHelm, changeHelm, redactHelm, validateHelm, type HelmWorkload } from './release';

const rand = (): string => randomBytes(3).toString('hex');
const HOST = `host-${rand()}`;
const tools = kubeTools();

/** Everything in the fake that carries the object's label, as "Kind/name". */
const made = (kube: FakeKube, objectId: string): string[] =>
  kube
    .objects()
    .filter((o) => o.metadata.labels?.[KubeLabel.ObjectId] === objectId)
    .map((o) => `${o.kind}/${o.metadata.name}`)
    .filter((k) => !k.startsWith('Pod/') && !k.startsWith('ReplicaSet/'))
    .sort();

async function rest(kube: FakeKube, method: string, urlPath: string, body?: unknown): Promise<Response> {
  return fetch(`${kube.url}${urlPath}`, { method, headers: { Authorization: `Bearer ${kube.token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
}

describe('helm driver (real helm, FAKE apiserver)', () => {
  let kube: FakeKube;
  let driver: HelmDriver;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-helm-test-'));
  const chart = path.join(dir, 'web');
  const options = (over: Partial<HelmDriverOptions['render']> = {}): HelmDriverOptions => ({
    hostId: HOST,
    kubeconfig: kube.kubeconfig,
    nodeName: kube.nodeName,
    readyTimeoutMs: 3000,
    goneTimeoutMs: 10_000,
    render: { bin: tools.helm, chartAllow: [], timeoutMs: 30_000, ...over },
  });
  const specOf = (objectId: string, w: Partial<HelmWorkload> = {}): WorkloadSpec<HelmWorkload> => ({
    objectId,
    name: objectId,
    labels: {},
    resources: NO_LIMITS,
    workload: { kubeconfig: '', context: '', namespace: '', chart, release: objectId, values: '', waitReady: true, ...w },
  });

  before(async () => {
    kube = await startFakeKube({ phaseMs: 20 });
    execFileSync(tools.helm, ['create', 'web'], { cwd: dir, stdio: 'ignore' });
    driver = new HelmDriver(new CgroupFs(`agent-helm-test-${rand()}`), options());
  });
  after(async () => {
    await driver?.close();
    await kube?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a chart becomes one object: every resource it renders applied and marked, listed in its inventory, RUNNING once its Deployment is', async () => {
    const id = `h${rand()}`;
    const rt = await driver.create(specOf(id));
    assert.equal(rt.phase, 'running', rt.reason);
    assert.equal(rt.runtimeId, `fake/default/${id}`);
    assert.deepEqual(made(kube, id), [`ConfigMap/${inventoryName(id)}`, `Deployment/${id}-web`, `Service/${id}-web`, `ServiceAccount/${id}-web`]);
    const cm = kube.objects('ConfigMap').find((o) => o.metadata.name === inventoryName(id))!;
    const listed = JSON.parse(String((cm as { data?: Record<string, string> }).data?.resources)) as Array<{ kind: string }>;
    assert.deepEqual(listed.map((r) => r.kind), ['ServiceAccount', 'Service', 'Deployment'], "in helm's install order");
    const deploy = kube.objects('Deployment').find((o) => o.metadata.name === `${id}-web`) as KubeObject;
    assert.equal((deploy.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels[KubeLabel.ObjectId], id, 'its pods are marked too');
    assert.equal((await driver.inspect(rt)).phase, 'running');
    await driver.remove(rt);
    assert.deepEqual(made(kube, id), [], 'removed whole, inventory included');
  });

  it('an update renders again: new values applied, what is no longer rendered deleted, the rest kept', async () => {
    const id = `h${rand()}`;
    const spec = specOf(id);
    const rt = await driver.create(spec);
    const uid = (kind: string): string | undefined => (kube.objects(kind).find((o) => o.metadata.name === `${id}-web`)?.metadata as { uid?: string } | undefined)?.uid;
    const serviceUid = uid('Service');
    const next = { ...spec, workload: changeHelm(spec.workload, { values: 'replicaCount: 2\nserviceAccount:\n  create: false\n' }, 'helm') };
    const up = await driver.update(rt, {}, next);
    assert.equal(up.phase, 'running', up.reason);
    assert.deepEqual(made(kube, id), [`ConfigMap/${inventoryName(id)}`, `Deployment/${id}-web`, `Service/${id}-web`]);
    assert.equal((kube.objects('Deployment').find((o) => o.metadata.name === `${id}-web`)?.spec as { replicas: number }).replicas, 2);
    assert.equal(uid('Service'), serviceUid, 'the Service was kept, not made again');
    await driver.remove(up);
    assert.deepEqual(made(kube, id), []);
  });

  it('takes nothing that is not its own: a release or a resource in the way is ALREADY_EXISTS, and nothing is written', async () => {
    const id = `h${rand()}`;
    const rt = await driver.create(specOf(id, { waitReady: false }));
    await assert.rejects(driver.create(specOf(`o${rand()}`, { release: id })), (e: unknown) => e instanceof AlreadyExistsError && /release default\/h/.test(e.message));
    await driver.remove(rt);

    const other = `h${rand()}`;
    const r = await rest(kube, 'POST', '/api/v1/namespaces/default/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: `${other}-web` }, spec: { ports: [{ port: 80 }] } });
    assert.equal(r.status, 201);
    await assert.rejects(driver.create(specOf(other)), (e: unknown) => e instanceof AlreadyExistsError && e.message.includes(`Service default/${other}-web exists in the cluster and is not this object's`));
    assert.deepEqual(made(kube, other), [], 'no inventory, no resource');
    assert.ok(kube.objects('Service').some((o) => o.metadata.name === `${other}-web` && !o.metadata.labels?.[KubeLabel.ObjectId]), 'theirs untouched');
  });

  it("what helm cannot render names the field; a missing helm, a chart outside the allow list, a kind the cluster does not serve are the host's", async () => {
    const id = `h${rand()}`;
    await assert.rejects(driver.create(specOf(id, { values: 'image: [' })), (e: unknown) => e instanceof InvalidArgumentError && e.message.startsWith('spec.helm.values: helm template failed'));
    fs.mkdirSync(path.join(dir, 'broken/templates'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'broken/Chart.yaml'), 'apiVersion: v2\nname: broken\nversion: 0.1.0\n');
    fs.writeFileSync(path.join(dir, 'broken/templates/cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ required "values.name is required" .Values.name }}\n');
    await assert.rejects(driver.create(specOf(id, { chart: path.join(dir, 'broken') })), (e: unknown) => e instanceof InvalidArgumentError && /^spec\.helm\.chart: helm template failed.*values\.name is required/.test(e.message));
    await assert.rejects(new HelmDriver(new CgroupFs(`agent-helm-test-${rand()}`), options({ bin: '/nonexistent/helm' })).create(specOf(id)), (e: unknown) => e instanceof FailedPreconditionError && /AGENT_HELM_BIN/.test(e.message));
    await assert.rejects(new HelmDriver(new CgroupFs(`agent-helm-test-${rand()}`), options({ chartAllow: [path.join(dir, 'broken')] })).create(specOf(id)), PermissionDeniedError);
    fs.writeFileSync(path.join(dir, 'broken/templates/cm.yaml'), 'apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: x\nspec: {}\n');
    await assert.rejects(driver.create(specOf(id, { chart: path.join(dir, 'broken') })), (e: unknown) => e instanceof FailedPreconditionError && /^spec\.helm\.chart: the cluster does not serve/.test(e.message));
    await driver.purge(specOf(id, { chart: path.join(dir, 'broken') }));
    assert.deepEqual(made(kube, id), [], 'what a failed create listed and applied is purged');
  });

  it("helm gets none of the agent's environment but its own settings, where to find things, and the values on stdin", async () => {
    const wrapper = path.join(dir, 'helm-wrapper');
    const seen = path.join(dir, 'helm-env');
    fs.writeFileSync(wrapper, `#!/bin/sh\nenv > '${seen}'\nexec '${tools.helm}' "$@"\n`, { mode: 0o755 });
    process.env.AGENT_TEST_SECRET = 'hunter2';
    process.env.HELM_DEBUG = 'false';
    try {
      const id = `h${rand()}`;
      const d = new HelmDriver(new CgroupFs(`agent-helm-test-${rand()}`), options({ bin: wrapper }));
      const rt = await d.create(specOf(id, { values: 'replicaCount: 2\n', waitReady: false }));
      const env = fs.readFileSync(seen, 'utf8');
      assert.doesNotMatch(env, /AGENT_TEST_SECRET|hunter2/);
      assert.match(env, /^HELM_DEBUG=false$/m);
      assert.match(env, /^PATH=/m);
      assert.equal((kube.objects('Deployment').find((o) => o.metadata.name === `${id}-web`)?.spec as { replicas: number }).replicas, 2, 'the values came through');
      await d.remove(rt);
      await d.close();
    } finally {
      delete process.env.AGENT_TEST_SECRET;
      delete process.env.HELM_DEBUG;
    }
  });

  it('a restarted agent takes the release back from its inventory; one deleted while it was down is NOT_FOUND', async () => {
    const id = `h${rand()}`;
    const rt = await driver.create(specOf(id));
    const fresh = new HelmDriver(new CgroupFs(`agent-helm-test-${rand()}`), options());
    try {
      const back = await fresh.adopt(specOf(id), undefined);
      assert.equal(back.runtimeId, rt.runtimeId);
      assert.equal(back.phase, 'running');
      await assert.rejects(fresh.adopt(specOf(id, { release: `x${rand()}` }), undefined), NotFoundError);
      await fresh.remove(back);
      assert.deepEqual(made(kube, id), []);
      await assert.rejects(fresh.adopt(specOf(id), undefined), NotFoundError);
    } finally {
      await fresh.close();
    }
  });

  it('a workload deleted behind its back makes the release FAILED, named; an update makes it again', async () => {
    const id = `h${rand()}`;
    const spec = specOf(id);
    const rt = await driver.create(spec);
    const events: RuntimeEvent[] = [];
    const stop = driver.watch((e) => events.push(e));
    try {
      const r = await rest(kube, 'DELETE', `/apis/apps/v1/namespaces/default/deployments/${id}-web`);
      assert.equal(r.status, 200);
      const failed = await waitFor('the delete heard', () => events.find((e) => e.phase === 'failed'));
      assert.equal(failed.reason, `Deployment ${id}-web: deleted from the cluster`);
      const again = await driver.update(rt, {}, spec);
      assert.equal(again.phase, 'running');
    } finally {
      stop();
    }
    await driver.remove(rt);
  });
});

describe('helm spec checks', () => {
  const w: HelmWorkload = { kubeconfig: '', context: '', namespace: '', chart: '/charts/web', release: 'web', values: '', waitReady: false };
  it('names each bad field', () => {
    const bad: Array<[Partial<HelmWorkload>, RegExp]> = [
      [{ chart: '' }, /^spec\.helm\.chart: required/],
      [{ chart: 'charts/web' }, /^spec\.helm\.chart: an absolute path/],
      [{ release: '' }, /^spec\.helm\.release: required/],
      [{ release: 'Web' }, /^spec\.helm\.release: lower case/],
      [{ release: 'a'.repeat(54) }, /^spec\.helm\.release: .*at most 53/],
      [{ values: 'a: [' }, /^spec\.helm\.values: not YAML/],
      [{ values: '- a\n- b' }, /^spec\.helm\.values: must be a YAML mapping/],
      [{ namespace: 'Bad_NS' }, /^spec\.helm\.namespace: /],
      [{ kubeconfig: 'rel/kc' }, /^spec\.helm\.kubeconfig: an absolute path/],
    ];
    for (const [over, msg] of bad) assert.throws(() => validateHelm({ ...w, ...over }, 'spec.helm'), (e: unknown) => e instanceof InvalidArgumentError && msg.test(e.message), JSON.stringify(over));
    validateHelm({ ...w, values: 'replicaCount: 2' }, 'spec.helm');
  });

  it('an update changes the chart or the values, checked at its own field', () => {
    assert.deepEqual(changeHelm(w, { values: 'a: 1' }, 'helm'), { ...w, values: 'a: 1' });
    assert.deepEqual(changeHelm(w, { chart: '/charts/web-2.tgz' }, 'helm'), { ...w, chart: '/charts/web-2.tgz' });
    assert.throws(() => changeHelm(w, { values: '[' }, 'helm'), /^Error: helm\.values: |helm\.values: /);
    assert.throws(() => changeHelm(w, { chart: 'x' }, 'helm'), /helm\.chart: an absolute path/);
  });

  it('a reader does not see the values; the host checks the chart and the kubeconfig', () => {
    assert.equal(redactHelm({ ...w, values: 'password: s3cret' }).values, '<redacted>');
    assert.equal(redactHelm(w).values, '');
    const policy = { kubeconfig: '/nonexistent/kc', kubeconfigAllow: [], helmChartAllow: [] };
    assert.throws(() => admitHelm(w, policy), (e: unknown) => e instanceof FailedPreconditionError && /spec\.helm\.chart: \/charts\/web does not exist/.test(e.message));
    const here = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-helm-admit-'));
    try {
      assert.equal(admitHelm({ ...w, chart: here }, policy).chart, here);
      assert.throws(() => admitHelm({ ...w, chart: here }, { ...policy, helmChartAllow: ['/nonexistent'] }), PermissionDeniedError);
      assert.throws(() => admitHelm({ ...w, chart: here, kubeconfig: here }, policy), (e: unknown) => e instanceof PermissionDeniedError && /spec\.helm\.kubeconfig/.test(e.message));
    } finally {
      fs.rmSync(here, { recursive: true, force: true });
    }
  });
});
