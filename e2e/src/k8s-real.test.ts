// The k8s and helm kinds against a REAL cluster, through the public API (buf
// curl). Runs only when KUBECONFIG names a kubeconfig (none can run on the
// CI machines: they skip it). Everything happens in a namespace of its own,
// made and deleted with the real kubectl; images are pulled by the cluster.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { api, kubeTools, startAgent, waitFor, type Agent } from '@agent/testkit';

const KUBECONFIG = process.env.KUBECONFIG ?? '';
const skip = KUBECONFIG === '' || !fs.existsSync(KUBECONFIG) ? 'KUBECONFIG names no kubeconfig: no real cluster' : false;

describe('Kubernetes and Helm objects on a REAL cluster (KUBECONFIG)', { skip }, () => {
  const tools = kubeTools();
  const ns = `agent-e2e-${randomBytes(3).toString('hex')}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-real-kube-'));
  const kubectl = (...args: string[]): string => execFileSync(tools.kubectl, ['--kubeconfig', KUBECONFIG, ...args], { encoding: 'utf8' });
  const kubectlIn = (input: string, ...args: string[]): string => execFileSync(tools.kubectl, ['--kubeconfig', KUBECONFIG, ...args], { encoding: 'utf8', input });
  const count = (kind: string, objectId: string): number => kubectl('get', kind, '-n', ns, '-l', `io.agent/object-id=${objectId}`, '-o', 'name').split('\n').filter((l) => l !== '').length;
  let agent: Agent;

  before(async () => {
    kubectlIn(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }), 'apply', '-f', '-');
    execFileSync(tools.helm, ['create', 'shop'], { cwd: dir, stdio: 'ignore' });
    agent = await startAgent({ AGENT_KUBECONFIG: KUBECONFIG, AGENT_HELM_BIN: tools.helm, AGENT_K8S_READY_TIMEOUT_MS: '180000' });
  });
  after(async () => {
    await agent?.stop();
    if (!skip) kubectl('delete', 'namespace', ns, '--wait=false');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a Deployment reaches RUNNING, scales, and is deleted with its pods (REAL cluster)', { timeout: 600_000 }, async () => {
    const manifest = JSON.stringify({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'sleeper' },
      spec: { replicas: 1, selector: { matchLabels: { app: 'sleeper' } }, template: { metadata: { labels: { app: 'sleeper' } }, spec: { containers: [{ name: 'main', image: 'busybox:1.36', command: ['sleep', '3600'] }] } } },
    });
    const made = await api(agent, 'Create', { spec: { name: 'sleeper', kind: 'KIND_K8S', resources: { memory_bytes: String(32 << 20) }, k8s: { namespace: ns, manifest, wait_ready: true } }, wait: true });
    assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made.body));
    const id = made.body.objectId as string;
    const scaled = await api(agent, 'Update', { object_id: id, k8s: { replicas: 2 }, wait: true });
    assert.equal(scaled.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(scaled.body));
    await waitFor('2 pods', () => (count('pods', id) === 2 ? true : undefined), 180_000, 1000);
    assert.equal((await api(agent, 'Delete', { object_id: id, wait: true })).body.status, 'EVENT_STATUS_SUCCEEDED');
    assert.equal(count('deployments', id), 0);
    assert.equal(count('pods', id), 0, 'foreground: its pods went first');
  });

  it('a helm create chart becomes one object and goes away whole (REAL cluster)', { timeout: 600_000 }, async () => {
    const made = await api(agent, 'Create', { spec: { name: 'shop', kind: 'KIND_HELM', helm: { namespace: ns, chart: path.join(dir, 'shop'), release: 'shop', wait_ready: true } }, wait: true });
    assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made.body));
    const id = made.body.objectId as string;
    for (const kind of ['serviceaccounts', 'services', 'deployments', 'configmaps']) assert.equal(count(kind, id), 1, kind);
    const up = await api(agent, 'Update', { object_id: id, helm: { values: 'serviceAccount:\n  create: false\n' }, wait: true });
    assert.equal(up.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(up.body));
    assert.equal(count('serviceaccounts', id), 0, 'no longer rendered: deleted');
    assert.equal((await api(agent, 'Delete', { object_id: id, wait: true })).body.status, 'EVENT_STATUS_SUCCEEDED');
    for (const kind of ['serviceaccounts', 'services', 'deployments', 'configmaps', 'pods']) assert.equal(count(kind, id), 0, kind);
  });
});
