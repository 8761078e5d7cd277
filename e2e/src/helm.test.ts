// A Helm chart as one object, through the public API (buf curl, the grpcurl
// stand-in): a chart made by the real `helm create` is rendered by the real
// helm 3.17 and applied to the FAKE apiserver of libs/testkit (no real
// Kubernetes API server can run here). It becomes one object, follows its
// values on Update, survives a SIGKILL of the agent, and goes away whole.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { api, kubeTools, startAgent, startFakeKube, waitFor, type Agent, type FakeKube } from '@agent/testkit';

const OBJECT_LABEL = 'io.agent/object-id';

/** What the fake holds with the object's label, as "Kind/name" (pods and ReplicaSets, made by controllers, apart). */
const made = (kube: FakeKube, objectId: string, all = false): string[] =>
  kube
    .objects()
    .filter((o) => o.metadata.labels?.[OBJECT_LABEL] === objectId)
    .map((o) => `${o.kind}/${o.metadata.name}`)
    .filter((k) => all || !/^(Pod|ReplicaSet)\//.test(k))
    .sort();

describe('Helm charts through the API on the FAKE apiserver', () => {
  const tools = kubeTools();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-helm-e2e-'));
  const chart = path.join(dir, 'shop');
  let kube: FakeKube;
  let agent: Agent;
  const env = (): Record<string, string> => ({ AGENT_KUBECONFIG: kube.kubeconfig, AGENT_HELM_BIN: tools.helm, AGENT_K8S_READY_TIMEOUT_MS: '5000' });
  before(async () => {
    kube = await startFakeKube({ phaseMs: 50 });
    execFileSync(tools.helm, ['create', 'shop'], { cwd: dir, stdio: 'ignore' });
    agent = await startAgent(env());
  });
  after(async () => {
    await agent?.stop();
    await kube?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a chart made by helm create becomes one object, follows its values, is taken back after a SIGKILL and goes away whole (FAKE apiserver)', async () => {
    const values = 'replicaCount: 2\npodAnnotations:\n  token: s3cret\n';
    const created = await api(agent, 'Create', { spec: { name: 'shop', kind: 'KIND_HELM', helm: { chart, release: 'shop', values, wait_ready: true } }, wait: true });
    assert.equal(created.body.state, 'STATE_RUNNING', JSON.stringify(created.body));
    const id = created.body.objectId as string;
    const got = (await api(agent, 'Get', { object_id: id })).body;
    assert.equal(got.runtimeId, 'fake/default/shop');
    assert.deepEqual(made(kube, id), ['ConfigMap/agent-release.shop', 'Deployment/shop', 'Service/shop', 'ServiceAccount/shop']);
    await waitFor('2 pods of the release', () => (made(kube, id, true).filter((k) => k.startsWith('Pod/')).length === 2 ? true : undefined));
    const read = (await api(agent, 'Get', { object_id: id }, agent.readerToken)).body;
    assert.equal(read.spec.helm.values, '<redacted>', 'a reader does not see the values');
    assert.equal(got.spec.helm.values, values);

    const up = await api(agent, 'Update', { object_id: id, helm: { values: 'replicaCount: 3\nserviceAccount:\n  create: false\n' }, wait: true });
    assert.equal(up.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(up.body));
    assert.deepEqual(made(kube, id), ['ConfigMap/agent-release.shop', 'Deployment/shop', 'Service/shop'], 'the ServiceAccount it no longer renders is gone');
    await waitFor('3 pods', () => (made(kube, id, true).filter((k) => k.startsWith('Pod/')).length === 3 ? true : undefined));
    assert.match((await api(agent, 'Get', { object_id: id })).body.spec.helm.values as string, /replicaCount: 3/);

    assert.equal(await agent.stop('SIGKILL'), null);
    agent = await startAgent(env(), agent);
    const back = (await api(agent, 'Get', { object_id: id })).body;
    assert.equal(back.state, 'STATE_RUNNING', JSON.stringify(back));
    assert.equal(back.runtimeId, 'fake/default/shop');

    const gone = await api(agent, 'Delete', { object_id: id, wait: true });
    assert.equal(gone.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(gone.body));
    assert.deepEqual(made(kube, id, true), [], 'every resource, pod and the inventory gone');
    assert.equal((await api(agent, 'Get', { object_id: id })).body.state, 'STATE_DELETED');
  });

  it('bad input names its field (FAKE apiserver)', async () => {
    const create = (helm: Record<string, unknown>) => api(agent, 'Create', { spec: { name: `bad-${Math.random().toString(36).slice(2, 8)}`, kind: 'KIND_HELM', helm }, wait: true });
    const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
      ['no chart', { release: 'a' }, 'invalid_argument', /^spec\.helm\.chart: required/],
      ['a relative chart', { chart: 'shop', release: 'a' }, 'invalid_argument', /^spec\.helm\.chart: an absolute path/],
      ['a release helm refuses', { chart, release: 'Shop_1' }, 'invalid_argument', /^spec\.helm\.release: /],
      ['values that are not YAML', { chart, release: 'a', values: 'a: [' }, 'invalid_argument', /^spec\.helm\.values: not YAML/],
      ['a chart that is not there', { chart: path.join(dir, 'absent'), release: 'a' }, 'failed_precondition', /^spec\.helm\.chart: .* does not exist/],
      ['a resources limit', { chart, release: 'a' }, 'invalid_argument', /spec\.resources\.cpus/],
    ];
    for (const [what, helm, code, field] of cases) {
      const r = what === 'a resources limit'
        ? await api(agent, 'Create', { spec: { name: 'lim', kind: 'KIND_HELM', helm, resources: { cpus: 1 } }, wait: true })
        : await create(helm);
      assert.equal(r.ok, false, what);
      assert.equal(r.error?.code, code, `${what}: ${JSON.stringify(r.error)}`);
      assert.match(r.error?.message ?? '', field, what);
    }
    // What only helm can tell (a template that fails with these values): the object fails, naming the chart.
    const failing = await create({ chart, release: 'failing', values: 'image: null\n' });
    assert.equal(failing.ok, true);
    const o = (await api(agent, 'Get', { object_id: (failing as { body: { objectId: string } }).body.objectId })).body;
    assert.equal(o.state, 'STATE_FAILED', JSON.stringify(o));
    assert.match(o.lastError as string, /spec\.helm\.chart/);
    assert.deepEqual(made(kube, (failing as { body: { objectId: string } }).body.objectId), [], 'nothing left of it');
  });
});
