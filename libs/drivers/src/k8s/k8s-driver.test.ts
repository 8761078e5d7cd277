// The k8s driver against the FAKE apiserver of libs/testkit (no real cluster
// can run here): lifecycle, phases, watch events, relists, immutable
// templates, errors, removal, and figures read from real v1 cgroups laid out
// as kubelet makes them. Then the pure parts: standings, quantities, checks.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, PermissionDeniedError, UnavailableError } from '@agent/grpc-kit';
import { KubeLabel } from '@agent/option';
import { freePort, startFakeKube, waitFor, type FakeKube } from '@agent/testkit';
import { CgroupFs } from '../cgroup-fs';
import { NO_LIMITS } from '../dimensions';
import type { Runtime, RuntimeEvent, WorkloadSpec } from '../types';
import { K8sDriver, type K8sDriverOptions } from './k8s-driver';
import { parseQuantity } from './manifest';
import { standingOf } from './status';
import { admitK8s, changeK8s, redactK8s, validateK8s, type K8sWorkload, type KubeObject } from './workload';

const MiB = 1024 * 1024;
const rand = (): string => randomBytes(3).toString('hex');
const HOST = `host-${rand()}`;

type Json = Record<string, unknown>;

const container = (image: string, extra: Json = {}): Json => ({ name: 'app', image, ...extra });

function deployment(name: string, image = 'nginx:1.27', replicas = 1): Json {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: { replicas, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [container(image)] } } },
  };
}

function statefulSet(name: string, replicas = 2): Json {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, labels: { app: name } },
    spec: { replicas, serviceName: name, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [container('postgres:16')] } } },
  };
}

function job(name: string, image: string): Json {
  return { apiVersion: 'batch/v1', kind: 'Job', metadata: { name }, spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [container(image, { command: ['sh', '-c', 'true'] })] } } } };
}

function pod(name: string, image = 'nginx:1.27'): Json {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: { app: name } }, spec: { containers: [container(image)] } };
}

function specOf(objectId: string, manifest: Json, opts: { waitReady?: boolean; memoryBytes?: number; context?: string; kubeconfig?: string } = {}): WorkloadSpec<K8sWorkload> {
  return {
    objectId,
    name: objectId,
    labels: {},
    resources: { ...NO_LIMITS, memoryBytes: opts.memoryBytes ?? 0 },
    workload: { kubeconfig: opts.kubeconfig ?? '', context: opts.context ?? '', namespace: '', manifest: JSON.stringify(manifest), waitReady: opts.waitReady ?? false },
  };
}

/** The spec after an Update's own change (replicas, image). */
const changed = (spec: WorkloadSpec<K8sWorkload>, change: { replicas?: number; image?: string }): WorkloadSpec<K8sWorkload> => ({
  ...spec,
  workload: changeK8s(spec.workload, { replicas: change.replicas, image: change.image ?? '', container: '' }, 'k8s'),
});

/** Through the fake's REST API, as someone other than the agent. */
async function rest(kube: FakeKube, method: string, urlPath: string, body?: unknown): Promise<Response> {
  return fetch(`${kube.url}${urlPath}`, {
    method,
    headers: { Authorization: `Bearer ${kube.token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

const labelled = (kube: FakeKube, kind: string, objectId: string): KubeObject[] => kube.objects(kind).filter((o) => o.metadata.labels?.[KubeLabel.ObjectId] === objectId) as KubeObject[];
const uidOf = (o: KubeObject | undefined): string | undefined => (o?.metadata as { uid?: string } | undefined)?.uid;

describe('k8s driver on the FAKE apiserver', () => {
  let kube: FakeKube;
  let driver: K8sDriver;
  const options = (): K8sDriverOptions => ({ hostId: HOST, kubeconfig: kube.kubeconfig, nodeName: kube.nodeName, readyTimeoutMs: 1500, goneTimeoutMs: 10_000 });
  /** Every runtime made, removed at the end whatever a test left. */
  const made: Runtime[] = [];
  const events: RuntimeEvent[] = [];
  let unwatch: () => void = () => undefined;

  before(async () => {
    kube = await startFakeKube({ phaseMs: 20 });
    driver = new K8sDriver(new CgroupFs(`agent-k8s-test-${rand()}`), options());
    unwatch = driver.watch((e) => events.push(e));
  });

  after(async () => {
    unwatch();
    for (const rt of made) await driver.remove(rt).catch(() => undefined);
    await driver.close();
    await kube.close();
  });

  const create = async (spec: WorkloadSpec<K8sWorkload>): Promise<Runtime> => {
    const rt = await driver.create(spec);
    made.push(rt);
    return rt;
  };
  const inspectUntil = (rt: Runtime, what: string, ok: (r: Runtime) => boolean): Promise<Runtime> =>
    waitFor(what, async () => {
      const r = await driver.inspect(rt);
      return ok(r) ? r : undefined;
    });
  const heard = (objectId: string, ok: (e: RuntimeEvent) => boolean): RuntimeEvent | undefined => events.find((e) => e.objectId === objectId && ok(e));

  it('FAKE apiserver: a Deployment with wait_ready is running; a missing image stays pending (ErrImagePull) until an update fixes it', async () => {
    const good = await create(specOf(`dep-${rand()}`, deployment(`web-${rand()}`), { waitReady: true }));
    assert.equal(good.phase, 'running');
    assert.equal(good.running, true);
    assert.match(good.runtimeId, /^fake\/default\/Deployment\/web-/);

    const spec = specOf(`dep-${rand()}`, deployment(`nopull-${rand()}`, 'example.com/missing:1'), { waitReady: true });
    const started = Date.now();
    const stuck = await create(spec);
    assert.ok(Date.now() - started >= 1400, 'waited out readyTimeoutMs');
    assert.equal(stuck.phase, 'pending');
    assert.equal(stuck.running, false);
    assert.match(stuck.reason ?? '', /^(ErrImagePull|ImagePullBackOff)$/);

    const fixed = await driver.update(stuck, {}, changed(spec, { image: 'nginx:1.27' }));
    assert.equal(fixed.phase, 'running', `after the fix: ${fixed.phase} ${fixed.reason}`);
    assert.equal(fixed.runtimeId, stuck.runtimeId);
    const pods = labelled(kube, 'Pod', spec.objectId).filter((p) => !p.metadata.deletionTimestamp);
    assert.deepEqual(pods.map((p) => (p.spec as { containers: Array<{ image: string }> }).containers[0]!.image), ['nginx:1.27']);
  });

  it('FAKE apiserver: watch hears pending -> running, and a delete behind the driver\'s back as stopped "deleted from the cluster"', async () => {
    const name = `watched-${rand()}`;
    const spec = specOf(`watch-${rand()}`, deployment(name));
    const rt = await create(spec);
    await waitFor('running heard', () => heard(spec.objectId, (e) => e.phase === 'running'));
    const mine = events.filter((e) => e.objectId === spec.objectId);
    assert.equal(mine[0]?.phase, 'pending', `first heard: ${JSON.stringify(mine[0])}`);
    assert.ok(mine.every((e) => e.runtimeId === rt.runtimeId));
    const running = mine.find((e) => e.phase === 'running')!;
    assert.equal(running.running, true);
    assert.equal(running.reason, '');

    const res = await rest(kube, 'DELETE', `/apis/apps/v1/namespaces/default/deployments/${name}`);
    assert.equal(res.status, 200);
    const gone = await waitFor('the delete heard', () => heard(spec.objectId, (e) => e.phase === 'stopped'));
    assert.equal(gone.reason, 'deleted from the cluster');
    assert.equal(gone.running, false);
    assert.equal(gone.runtimeId, rt.runtimeId);
  });

  it('FAKE apiserver: informers relist after their watches expire (410): a later change is still heard', async () => {
    const spec = specOf(`relist-${rand()}`, deployment(`relist-${rand()}`), { waitReady: true });
    const rt = await create(spec);
    assert.equal(rt.phase, 'running');
    kube.expireWatches();
    const from = events.length;
    // Without wait_ready the update answers at once (pending): where it gets to is for the listeners to hear.
    const later = { ...spec, workload: { ...spec.workload, waitReady: false } };
    const answer = await driver.update(rt, {}, changed(later, { replicas: 0 }));
    assert.equal(answer.phase, 'pending');
    const stopped = await waitFor('scaled to 0 heard', () => events.slice(from).find((e) => e.objectId === spec.objectId && e.phase === 'stopped'));
    assert.equal(stopped.reason, 'scaled to 0');
    assert.equal(stopped.runtimeId, rt.runtimeId);
    kube.expireWatches();
    await driver.update(rt, {}, changed(later, { replicas: 2 }));
    await waitFor('running again heard', () => events.slice(from).find((e) => e.objectId === spec.objectId && e.phase === 'running'));
    assert.equal((await driver.inspect(rt)).phase, 'running');
    assert.equal(labelled(kube, 'Pod', spec.objectId).filter((p) => !p.metadata.deletionTimestamp).length, 2);
  });

  it('FAKE apiserver: a Job ends stopped (exit 0), a failing one failed; a new image re-creates the Job (its template is immutable)', async () => {
    const okName = `job-${rand()}`;
    const spec = specOf(`job-${rand()}`, job(okName, 'busybox:1.36'), { waitReady: true });
    const rt = await create(spec);
    assert.notEqual(rt.phase, 'pending');
    const done = await inspectUntil(rt, 'the Job complete', (r) => r.phase === 'stopped');
    assert.equal(done.exitCode, 0);
    assert.equal(done.reason, 'complete');
    assert.equal(done.running, false);

    const bad = await create(specOf(`job-${rand()}`, job(`bad-${rand()}`, 'fail:1'), { waitReady: true }));
    const failed = await inspectUntil(bad, 'the Job failed', (r) => r.phase === 'failed');
    assert.equal(failed.reason, 'BackoffLimitExceeded');
    assert.equal(failed.exitCode, 1);

    const before = kube.objects('Job').find((j) => j.metadata.name === okName);
    const again = await driver.update(done, {}, changed(spec, { image: 'busybox:1.37' }));
    const jobs = kube.objects('Job').filter((j) => j.metadata.name === okName);
    assert.equal(jobs.length, 1);
    assert.notEqual(uidOf(jobs[0]), uidOf(before), 'a new Job');
    assert.equal(((jobs[0]!.spec as Json).template as { spec: { containers: Array<{ image: string }> } }).spec.containers[0]!.image, 'busybox:1.37');
    assert.equal(again.runtimeId, rt.runtimeId);
    const ended = await inspectUntil(again, 'the new Job complete', (r) => r.phase === 'stopped');
    assert.equal(ended.exitCode, 0);
  });

  it('FAKE apiserver: a Pod runs; a memory change re-creates it (immutable), an image change applies in place', async () => {
    const name = `pod-${rand()}`;
    const spec = specOf(`pod-${rand()}`, pod(name), { waitReady: true, memoryBytes: 64 * MiB });
    const rt = await create(spec);
    assert.equal(rt.phase, 'running');
    assert.equal(rt.applied.memoryBytes, 64 * MiB);
    const first = uidOf(kube.objects('Pod').find((p) => p.metadata.name === name));

    const bigger = { ...spec, resources: { ...spec.resources, memoryBytes: 128 * MiB } };
    const resized = await driver.update(rt, { memoryBytes: 128 * MiB }, bigger);
    assert.equal(resized.applied.memoryBytes, 128 * MiB);
    assert.equal(resized.phase, 'running');
    const second = kube.objects('Pod').find((p) => p.metadata.name === name);
    assert.notEqual(uidOf(second), first, 'a new Pod');
    assert.equal((second!.status as { phase?: string }).phase, 'Running', 'the answer is the new Pod\'s, not the old one\'s');
    assert.equal((second!.spec as { containers: Array<{ resources: { limits: { memory: string } } }> }).containers[0]!.resources.limits.memory, String(128 * MiB));

    const retagged = await driver.update(resized, {}, changed(bigger, { image: 'nginx:1.28' }));
    assert.equal(retagged.phase, 'running');
    const third = kube.objects('Pod').find((p) => p.metadata.name === name);
    assert.equal(uidOf(third), uidOf(second), 'the same Pod');
    assert.equal((third!.spec as { containers: Array<{ image: string }> }).containers[0]!.image, 'nginx:1.28');
  });

  it('FAKE apiserver: a Pod\'s own changes are heard (it runs, then ends), and its delete behind the driver\'s back', async () => {
    const once = pod(`once-${rand()}`, 'busybox:1.36');
    (once.spec as Json).restartPolicy = 'Never';
    const spec = specOf(`pod-${rand()}`, once);
    const rt = await create(spec);
    const ended = await waitFor('the Pod\'s end heard', () => heard(spec.objectId, (e) => e.phase === 'stopped'));
    assert.equal(ended.reason, 'succeeded');
    assert.equal(ended.exitCode, 0);
    assert.equal(ended.runtimeId, rt.runtimeId);
    assert.ok(heard(spec.objectId, (e) => e.phase === 'running'), 'it ran first');

    const name = `doomed-${rand()}`;
    const doomed = specOf(`pod-${rand()}`, pod(name), { waitReady: true });
    const live = await create(doomed);
    assert.equal(live.phase, 'running');
    const res = await rest(kube, 'DELETE', `/api/v1/namespaces/default/pods/${name}`);
    assert.equal(res.status, 200);
    const gone = await waitFor('the Pod\'s delete heard', () => heard(doomed.objectId, (e) => e.phase === 'stopped'));
    assert.equal(gone.reason, 'deleted from the cluster');
    assert.equal(gone.runtimeId, live.runtimeId);
  });

  it('FAKE apiserver: a name taken by a workload not the agent\'s is AlreadyExists; a refused manifest is InvalidArgument; an unknown context is FailedPrecondition', async () => {
    const taken = `taken-${rand()}`;
    const res = await rest(kube, 'POST', '/apis/apps/v1/namespaces/default/deployments', deployment(taken));
    assert.equal(res.status, 201);
    await assert.rejects(driver.create(specOf(`taken-${rand()}`, deployment(taken))), (e: unknown) => e instanceof AlreadyExistsError && /not this object's/.test(e.message));
    assert.equal(kube.objects('Deployment').find((d) => d.metadata.name === taken)?.metadata.labels?.[KubeLabel.ObjectId], undefined, 'left as it was');
    await rest(kube, 'DELETE', `/apis/apps/v1/namespaces/default/deployments/${taken}`);

    const mismatched = deployment(`mismatch-${rand()}`);
    ((mismatched.spec as Json).selector as Json).matchLabels = { app: 'something-else' };
    await assert.rejects(driver.create(specOf(`bad-${rand()}`, mismatched)), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.ok(e.field.startsWith('spec.k8s.manifest'), e.field);
      assert.equal(e.field, 'spec.k8s.manifest.spec.template.metadata.labels');
      assert.match(e.message, /selector/);
      return true;
    });

    await assert.rejects(driver.create(specOf(`ctx-${rand()}`, deployment(`ctx-${rand()}`), { context: 'nowhere' })), (e: unknown) => e instanceof FailedPreconditionError && /spec\.k8s\.context/.test(e.message));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'k8s-driver-test-'));
    try {
      const lost = path.join(dir, 'kubeconfig');
      fs.writeFileSync(lost, fs.readFileSync(kube.kubeconfig, 'utf8').replace(/current-context: .*/, 'current-context: ghost'));
      await assert.rejects(driver.create(specOf(`ctx-${rand()}`, deployment(`ctx-${rand()}`), { kubeconfig: lost })), (e: unknown) => e instanceof FailedPreconditionError && /spec\.k8s\./.test(e.message));
      await assert.rejects(driver.create(specOf(`ctx-${rand()}`, deployment(`ctx-${rand()}`), { kubeconfig: path.join(dir, 'absent') })), (e: unknown) => e instanceof FailedPreconditionError && /spec\.k8s\.kubeconfig/.test(e.message));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('FAKE apiserver: a watch whose first list fails is not left retrying behind the driver (nothing connects later, nothing stays open after close)', async () => {
    // The cluster's address is a port where nothing listens yet; a TCP relay to the fake opens there after the failure.
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'k8s-driver-test-'));
    const config = path.join(dir, 'kubeconfig');
    fs.writeFileSync(config, fs.readFileSync(kube.kubeconfig, 'utf8').replace(/server: https:\/\/127\.0\.0\.1:\d+/, `server: https://127.0.0.1:${port}`));
    const lonely = new K8sDriver(new CgroupFs(`agent-k8s-test-${rand()}`), { ...options(), kubeconfig: config });
    const open = new Set<net.Socket>();
    let accepted = 0;
    const relay = net.createServer((s) => {
      accepted++;
      open.add(s);
      const up = net.connect(Number(new URL(kube.url).port), '127.0.0.1');
      s.pipe(up).pipe(s);
      s.on('error', () => undefined).on('close', () => (open.delete(s), up.destroy()));
      up.on('error', () => undefined).on('close', () => s.destroy());
    });
    try {
      const spec = specOf(`unreached-${rand()}`, deployment(`unreached-${rand()}`));
      const rt: Runtime = { runtimeId: `fake/default/Deployment/unreached`, pid: 0, cgroup: { version: 'v1', paths: {} }, applied: NO_LIMITS, running: false };
      await assert.rejects(lonely.update(rt, {}, spec), UnavailableError);
      await new Promise<void>((resolve) => relay.listen(port, '127.0.0.1', resolve));
      await new Promise((r) => setTimeout(r, 2500)); // past the informers' restart delay (1 s)
      assert.equal(accepted, 0, 'an informer dropped after its failed list came back by itself');
      await lonely.close();
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(open.size, 0, 'a connection outlived the driver');
    } finally {
      await lonely.close();
      for (const s of open) s.destroy();
      await new Promise((r) => relay.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('FAKE apiserver: a StatefulSet runs its ordinal pods, scales by Update, takes a memory change in place, and is removed with its pods', async () => {
    const name = `db-${rand()}`;
    const spec = specOf(`sts-${rand()}`, statefulSet(name), { waitReady: true, memoryBytes: 64 * MiB });
    const rt = await create(spec);
    assert.equal(rt.phase, 'running', `${rt.phase} ${rt.reason}`);
    assert.equal(rt.runtimeId, `fake/default/StatefulSet/${name}`);
    assert.equal(rt.applied.memoryBytes, 64 * MiB);
    const podNames = (): string[] => labelled(kube, 'Pod', spec.objectId).filter((p) => !p.metadata.deletionTimestamp).map((p) => p.metadata.name).sort();
    assert.deepEqual(podNames(), [`${name}-0`, `${name}-1`], 'ordinal pods, each marked with the object');

    const three = changed(spec, { replicas: 3 });
    const scaled = await driver.update(rt, {}, three);
    assert.equal(scaled.phase, 'running', `${scaled.phase} ${scaled.reason}`);
    assert.equal(scaled.runtimeId, rt.runtimeId);
    await waitFor('a third ordinal pod', () => (podNames().length === 3 ? true : undefined));
    assert.deepEqual(podNames(), [`${name}-0`, `${name}-1`, `${name}-2`]);

    const uid = uidOf(kube.objects('StatefulSet').find((o) => o.metadata.name === name));
    const resized = await driver.update(scaled, { memoryBytes: 128 * MiB }, { ...three, resources: { ...three.resources, memoryBytes: 128 * MiB } });
    assert.equal(resized.applied.memoryBytes, 128 * MiB);
    const sts = kube.objects('StatefulSet').find((o) => o.metadata.name === name);
    assert.equal(uidOf(sts), uid, 'the same StatefulSet: its template is not immutable');
    const tpl = (sts!.spec as { replicas: number; template: { spec: { containers: Array<{ resources: { limits: { memory: string } } }> } } });
    assert.equal(tpl.template.spec.containers[0]!.resources.limits.memory, String(128 * MiB));
    assert.equal(tpl.replicas, 3, 'the scale stays');

    await driver.remove(resized);
    assert.equal(kube.objects('StatefulSet').filter((o) => o.metadata.name === name).length, 0);
    assert.deepEqual(labelled(kube, 'Pod', spec.objectId), [], 'its pods went with it');
  });

  it('FAKE apiserver: remove waits until the Deployment and its pods are gone, and again succeeds; purge finds what carries the label without a runtime', async () => {
    const name = `removed-${rand()}`;
    const spec = specOf(`rm-${rand()}`, deployment(name, 'nginx:1.27', 2), { waitReady: true });
    const rt = await create(spec);
    assert.equal(rt.phase, 'running');
    assert.equal(labelled(kube, 'Pod', spec.objectId).length, 2);
    await driver.remove(rt);
    assert.equal(kube.objects('Deployment').filter((d) => d.metadata.name === name).length, 0);
    assert.deepEqual(labelled(kube, 'Pod', spec.objectId), [], 'the pods went first');
    assert.equal(labelled(kube, 'ReplicaSet', spec.objectId).length, 0);
    await driver.remove(rt);
    await assert.rejects(driver.inspect(rt), /not known|gone/);

    // What an interrupted create left: the object in the cluster, no runtime known to the agent.
    const orphanSpec = specOf(`purge-${rand()}`, deployment(`purged-${rand()}`), { waitReady: true });
    const other = new K8sDriver(new CgroupFs(`agent-k8s-test-${rand()}`), options());
    try {
      const left = await other.create(orphanSpec);
      assert.equal(left.phase, 'running');
    } finally {
      await other.close();
    }
    assert.equal(labelled(kube, 'Deployment', orphanSpec.objectId).length, 1);
    await driver.purge(orphanSpec);
    assert.equal(labelled(kube, 'Deployment', orphanSpec.objectId).length, 0);
    assert.deepEqual(labelled(kube, 'Pod', orphanSpec.objectId), []);
    await driver.purge(orphanSpec);
  });

  describe('figures from the pod cgroups kubelet makes (real v1 cgroups)', () => {
    const CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids', 'blkio'] as const;
    const ROOT = '/sys/fs/cgroup';
    const v1 = new CgroupFs('agent-k8s-probe').version === 'v1';
    const dirs: string[] = [];
    const children: ChildProcess[] = [];

    /** A pod's cgroup at rel below each controller, as kubelet lays it out, with a process in it. */
    async function podCgroupAt(rel: string, memoryLimit: number): Promise<void> {
      const parts = rel.split('/');
      for (const c of CONTROLLERS) {
        for (let i = 1; i <= parts.length; i++) {
          const dir = path.join(ROOT, c, ...parts.slice(0, i));
          if (!fs.existsSync(dir)) {
            fs.mkdirSync(dir);
            dirs.push(dir);
          }
        }
      }
      fs.writeFileSync(path.join(ROOT, 'memory', rel, 'memory.limit_in_bytes'), String(memoryLimit));
      const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
      children.push(sleeper);
      await new Promise((resolve, reject) => sleeper.once('spawn', resolve).once('error', reject));
      for (const c of CONTROLLERS) fs.writeFileSync(path.join(ROOT, c, rel, 'cgroup.procs'), String(sleeper.pid));
    }
    /** kubelet's cgroupfs driver, a BestEffort pod. */
    const podCgroup = (uid: string, memoryLimit: number): Promise<void> => podCgroupAt(`kubepods/besteffort/pod${uid}`, memoryLimit);

    after(async () => {
      for (const child of children) {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.kill('SIGKILL');
          await exited;
        }
      }
      // Children first: the deepest directories were made last.
      for (const dir of dirs.reverse()) {
        try {
          fs.rmdirSync(dir);
        } catch (err) {
          // An emptied cgroup can take a moment to be removable.
          await new Promise((r) => setTimeout(r, 100));
          try {
            fs.rmdirSync(dir);
          } catch {
            console.error(`could not remove ${dir}: ${(err as Error).message}`);
          }
        }
      }
    });

    it('FAKE apiserver: sampler() sums the figures of the pods bound to this node; a pod on another node gives none', async (t) => {
      if (!v1) {
        t.skip('this host has cgroup v2: the v1 pod layout cannot be made here');
        return;
      }
      const spec = specOf(`figs-${rand()}`, deployment(`figs-${rand()}`), { waitReady: true });
      const rt = await create(spec);
      assert.equal(rt.phase, 'running');
      const pods = labelled(kube, 'Pod', spec.objectId);
      assert.equal(pods.length, 1);
      assert.equal((pods[0]!.spec as { nodeName?: string }).nodeName, kube.nodeName);
      const uid = uidOf(pods[0])!;

      const none = driver.sampler(rt);
      assert.deepEqual(none.read(), {}, 'no cgroup of the pod yet: no figures');
      none.close();

      await podCgroup(uid, 64 * MiB);
      const sampler = driver.sampler(rt);
      try {
        const figures = sampler.read();
        assert.equal(figures.memoryLimitBytes, 64 * MiB);
        assert.ok((figures.pids ?? 0) >= 1, `pids ${figures.pids}`);
        // v1 does not move a process's memory charge with it: usage may be 0, but it is read.
        assert.equal(typeof figures.memoryUsageBytes, 'number');
        assert.equal(typeof figures.cpuUsageNs, 'number');
      } finally {
        sampler.close();
      }

      // The same object, seen by an agent on another node: its pod is not there.
      const elsewhere = new K8sDriver(new CgroupFs(`agent-k8s-test-${rand()}`), { ...options(), nodeName: `not-${kube.nodeName}` });
      try {
        const adopted = await elsewhere.adopt(spec, rt);
        const remote = elsewhere.sampler(adopted);
        assert.deepEqual(remote.read(), {});
        remote.close();
      } finally {
        await elsewhere.close();
      }
    });

    it('FAKE apiserver: pods in the systemd layout (Burstable) and the cgroupfs one (Guaranteed) are both found, and summed', async (t) => {
      if (!v1) {
        t.skip('this host has cgroup v2: the v1 pod layout cannot be made here');
        return;
      }
      const spec = specOf(`figs-${rand()}`, deployment(`figs-${rand()}`, 'nginx:1.27', 2), { waitReady: true });
      const rt = await create(spec);
      const [a, b] = labelled(kube, 'Pod', spec.objectId).map(uidOf);
      assert.ok(a && b, 'two pods');
      await podCgroupAt(`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${a.replace(/-/g, '_')}.slice`, 48 * MiB);
      const sampler = driver.sampler(rt);
      try {
        assert.equal(sampler.read().memoryLimitBytes, 48 * MiB, 'the systemd-layout pod alone');
        await podCgroupAt(`kubepods/pod${b}`, 16 * MiB);
        const figures = sampler.read();
        assert.equal(figures.memoryLimitBytes, 64 * MiB, 'both pods');
        assert.ok((figures.pids ?? 0) >= 2, `pids ${figures.pids}`);
      } finally {
        sampler.close();
      }
    });
  });

  // No v2 controllers can be had on this (v1) host: the pod's slice is laid out
  // as plain files the way the kernel shows them, with known values.
  it('FAKE apiserver: on cgroup v2 (simulated unified tree) a pod\'s figures are read from its systemd slice', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cg2-pods-'));
    fs.writeFileSync(path.join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    const v2 = new CgroupFs('agent', `30 23 0:26 / ${root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n`);
    assert.equal(v2.version, 'v2');
    const onV2 = new K8sDriver(v2, options());
    try {
      const spec = specOf(`figs-v2-${rand()}`, deployment(`figs-v2-${rand()}`), { waitReady: true });
      const rt = await onV2.create(spec);
      made.push(rt);
      const uid = uidOf(labelled(kube, 'Pod', spec.objectId)[0])!;
      const none = onV2.sampler(rt);
      assert.deepEqual(none.read(), {}, 'no slice yet: no figures');
      none.close();
      const dir = path.join(root, 'kubepods.slice', 'kubepods-besteffort.slice', `kubepods-besteffort-pod${uid.replace(/-/g, '_')}.slice`);
      fs.mkdirSync(dir, { recursive: true });
      const files: Record<string, string> = {
        'cpu.stat': 'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\nthrottled_usec 40\n',
        'memory.current': `${5 * MiB}\n`,
        'memory.max': `${32 * MiB}\n`,
        'pids.current': '2\n',
        'io.stat': '8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n',
        'memory.events': 'low 0\nhigh 7\nmax 0\noom 0\noom_kill 0\n',
        'cgroup.procs': `${process.pid}\n`,
      };
      for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text);
      const sampler = onV2.sampler(rt);
      try {
        // Its process is this test's, in the host's network namespace: network figures would be the host's, so they are unset.
        assert.deepEqual(sampler.read(), { cpuUsageNs: 1_500_000, memoryUsageBytes: 5 * MiB, memoryLimitBytes: 32 * MiB, pids: 2, blkioReadBytes: 100, blkioWriteBytes: 200, cpuThrottledPeriods: 3, cpuThrottledNs: 40_000, memoryHighEvents: 7 });
      } finally {
        sampler.close();
      }
    } finally {
      await onV2.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('k8s standings (standingOf)', () => {
  const dep = (spec: Json, status: Json, generation = 2): KubeObject => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', generation }, spec, status });
  const available = [{ type: 'Available', status: 'True' }, { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }];
  const podWith = (status: Json, labels: Record<string, string> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', labels }, spec: {}, status });
  const waiting = (reason: string): Json => ({ phase: 'Pending', containerStatuses: [{ name: 'a', state: { waiting: { reason } } }] });

  it('a Deployment available with every replica updated and ready is running', () => {
    assert.deepEqual(standingOf(dep({ replicas: 2 }, { observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2, conditions: available }), []), { phase: 'running', reason: '' });
  });

  it('a Deployment progressing is pending with what its pods wait on, or how many are ready', () => {
    const rolling = dep({ replicas: 2 }, { observedGeneration: 1, replicas: 2, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2, conditions: available });
    assert.deepEqual(standingOf(rolling, []), { phase: 'pending', reason: '2/2 ready' });
    assert.deepEqual(standingOf(rolling, [podWith(waiting('ContainerCreating')), podWith(waiting('ImagePullBackOff'))]), { phase: 'pending', reason: 'ImagePullBackOff' });
    assert.deepEqual(standingOf(rolling, [podWith(waiting('ContainerCreating'))]), { phase: 'pending', reason: 'ContainerCreating' });
    const stalled = dep({ replicas: 1 }, { observedGeneration: 2, replicas: 1, conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }] });
    assert.deepEqual(standingOf(stalled, []), { phase: 'pending', reason: 'ProgressDeadlineExceeded' });
    const deleting = dep({ replicas: 1 }, {});
    deleting.metadata.deletionTimestamp = '2025-01-01T00:00:00Z';
    assert.deepEqual(standingOf(deleting, []), { phase: 'pending', reason: 'being deleted' });
  });

  it('a Deployment scaled to 0 is stopped once no replica is left', () => {
    assert.deepEqual(standingOf(dep({ replicas: 0 }, { observedGeneration: 2 }), []), { phase: 'stopped', reason: 'scaled to 0' });
    assert.deepEqual(standingOf(dep({ replicas: 0 }, { observedGeneration: 2, replicas: 1 }), []), { phase: 'pending', reason: 'scaling to 0' });
    assert.deepEqual(standingOf(dep({ replicas: 0 }, { observedGeneration: 1 }), []), { phase: 'pending', reason: 'scaling to 0' }, 'not yet observed');
  });

  it('a Job complete is stopped with exit 0, failed is failed with its pod\'s exit code, running while a pod runs', () => {
    const jobOf = (status: Json): KubeObject => ({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j', generation: 1 }, spec: {}, status });
    assert.deepEqual(standingOf(jobOf({ conditions: [{ type: 'Complete', status: 'True' }] }), []), { phase: 'stopped', reason: 'complete', exitCode: 0 });
    const exited = podWith({ phase: 'Failed', containerStatuses: [{ name: 'a', state: { terminated: { exitCode: 3 } } }] });
    assert.deepEqual(standingOf(jobOf({ conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded' }] }), [exited]), { phase: 'failed', reason: 'BackoffLimitExceeded', exitCode: 3 });
    assert.deepEqual(standingOf(jobOf({ conditions: [{ type: 'Failed', status: 'False' }] }), [podWith({ phase: 'Running' })]), { phase: 'running', reason: '' });
    assert.deepEqual(standingOf(jobOf({}), []), { phase: 'pending', reason: 'starting' });
  });

  it('a Pod: Running and Ready is running, Succeeded stopped, Failed failed with its exit code, otherwise pending with why', () => {
    const own = (status: Json): KubeObject => ({ ...podWith(status), metadata: { name: 'p', generation: 1 } });
    assert.deepEqual(standingOf(own({ phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] }), []), { phase: 'running', reason: '' });
    assert.deepEqual(standingOf(own({ phase: 'Running', conditions: [{ type: 'Ready', status: 'False' }], containerStatuses: [{ state: { waiting: { reason: 'CrashLoopBackOff' } } }] }), []), { phase: 'pending', reason: 'CrashLoopBackOff' });
    assert.deepEqual(standingOf(own({ phase: 'Succeeded' }), []), { phase: 'stopped', reason: 'succeeded', exitCode: 0 });
    assert.deepEqual(standingOf(own({ phase: 'Failed', containerStatuses: [{ state: { terminated: { exitCode: 2 } } }] }), []), { phase: 'failed', reason: 'exited with code 2', exitCode: 2 });
    assert.deepEqual(standingOf(own({ phase: 'Failed', reason: 'Evicted' }), []), { phase: 'failed', reason: 'Evicted', exitCode: undefined });
    assert.deepEqual(standingOf(own(waiting('ErrImagePull')), []), { phase: 'pending', reason: 'ErrImagePull' });
    assert.deepEqual(standingOf(own({ phase: 'Pending' }), []), { phase: 'pending', reason: 'Pending' });
  });
});

describe('k8s quantities (parseQuantity)', () => {
  for (const [q, want] of [
    ['500m', 0.5],
    ['1Gi', 2 ** 30],
    ['64M', 64e6],
    ['64Mi', 64 * MiB],
    ['2', 2],
    ['1e3', 1000],
    [2.5, 2.5],
  ] as const) {
    it(`${JSON.stringify(q)} is ${want}`, () => assert.equal(parseQuantity(q), want));
  }
  for (const q of ['', 'lots', '1Xi', '1.5 Gi', undefined, null, {}]) {
    it(`${JSON.stringify(q)} is none`, () => assert.equal(parseQuantity(q), undefined));
  }
});

describe('k8s spec checks', () => {
  const w = (manifest: string, more: Partial<K8sWorkload> = {}): K8sWorkload => ({ kubeconfig: '', context: '', namespace: '', manifest, waitReady: false, ...more });
  const refused = (work: K8sWorkload, field: string): void => {
    assert.throws(() => validateK8s(work, 'spec.k8s'), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.equal(e.field, field);
      return true;
    });
  };

  it('validateK8s accepts one workload as YAML or JSON', () => {
    validateK8s(w(JSON.stringify(deployment('ok'))), 'spec.k8s');
    validateK8s(w('apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: ns\nspec:\n  containers:\n  - name: c\n    image: busybox\n', { namespace: 'ns' }), 'spec.k8s');
  });

  it('validateK8s refuses two documents, a Service, a wrong apiVersion, a namespace mismatch and no containers, each at its field', () => {
    refused(w(`${JSON.stringify(pod('a'))}\n---\n${JSON.stringify(pod('b'))}`), 'spec.k8s.manifest');
    refused(w(JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: {} })), 'spec.k8s.manifest.kind');
    refused(w(JSON.stringify({ ...deployment('d'), apiVersion: 'extensions/v1beta1' })), 'spec.k8s.manifest.apiVersion');
    refused(w(JSON.stringify({ ...pod('p'), metadata: { name: 'p', namespace: 'theirs' } }), { namespace: 'mine' }), 'spec.k8s.namespace');
    const empty = deployment('d');
    (((empty.spec as Json).template as Json).spec as Json).containers = [];
    refused(w(JSON.stringify(empty)), 'spec.k8s.manifest.spec.template.spec.containers');
    refused(w(JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: {} })), 'spec.k8s.manifest.spec.containers');
    refused(w(''), 'spec.k8s.manifest');
    refused(w('{not json'), 'spec.k8s.manifest');
    refused(w(JSON.stringify(pod('Upper_Case'))), 'spec.k8s.manifest.metadata.name');
    refused(w(JSON.stringify(pod('p')), { kubeconfig: 'relative/kubeconfig' }), 'spec.k8s.kubeconfig');
    refused(w(JSON.stringify(pod('p')), { namespace: 'Not_A_Label' }), 'spec.k8s.namespace');
  });

  it('redactK8s hides the values of env variables, keeps their names', () => {
    const m = pod('secretive');
    ((m.spec as Json).containers as Json[])[0]!.env = [
      { name: 'PASSWORD', value: 'hunter2' },
      { name: 'FROM_SECRET', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
    ];
    const shown = redactK8s(w(JSON.stringify(m)));
    assert.doesNotMatch(shown.manifest, /hunter2/);
    const env = ((JSON.parse(shown.manifest) as { spec: { containers: Array<{ env: Json[] }> } }).spec.containers[0]!.env);
    assert.deepEqual(env, [
      { name: 'PASSWORD', value: '<redacted>' },
      { name: 'FROM_SECRET', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
    ]);
    assert.equal(redactK8s(w('{broken')).manifest, '', 'what does not parse is not shown');
  });

  it('admitK8s: a kubeconfig other than the agent\'s or an allowed one is PermissionDenied', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'k8s-admit-'));
    try {
      const own = path.join(dir, 'agent.kubeconfig');
      const allowedDir = path.join(dir, 'allowed');
      const other = path.join(dir, 'other.kubeconfig');
      fs.mkdirSync(allowedDir);
      for (const f of [own, other, path.join(allowedDir, 'team.kubeconfig')]) fs.writeFileSync(f, '');
      const policy = { kubeconfig: own, kubeconfigAllow: [allowedDir] };
      const work = w(JSON.stringify(pod('p')));
      assert.equal(admitK8s(work, policy), work, 'no kubeconfig: the agent\'s');
      admitK8s({ ...work, kubeconfig: own }, policy);
      admitK8s({ ...work, kubeconfig: path.join(allowedDir, 'team.kubeconfig') }, policy);
      assert.throws(() => admitK8s({ ...work, kubeconfig: other }, policy), (e: unknown) => e instanceof PermissionDeniedError && /spec\.k8s\.kubeconfig/.test(e.message));
      assert.throws(() => admitK8s({ ...work, kubeconfig: path.join(allowedDir, '../other.kubeconfig') }, policy), PermissionDeniedError);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('changeK8s: replicas only where there are some, images only of containers that exist', () => {
    const field = (fn: () => unknown, want: string): void => {
      assert.throws(fn, (e: unknown) => e instanceof InvalidArgumentError && e.field === want);
    };
    field(() => changeK8s(w(JSON.stringify(job('j', 'busybox'))), { replicas: 2, image: '', container: '' }, 'k8s'), 'k8s.replicas');
    field(() => changeK8s(w(JSON.stringify(deployment('d'))), { replicas: -1, image: '', container: '' }, 'k8s'), 'k8s.replicas');
    field(() => changeK8s(w(JSON.stringify(deployment('d'))), { image: 'nginx:2', container: 'nope' }, 'k8s'), 'k8s.container');
    field(() => changeK8s(w(JSON.stringify(deployment('d'))), { image: '', container: 'app' }, 'k8s'), 'k8s.image');
    field(() => changeK8s(w(JSON.stringify(deployment('d'))), { image: 'bad image', container: '' }, 'k8s'), 'k8s.image');
    const next = JSON.parse(changeK8s(w(JSON.stringify(deployment('d'))), { replicas: 3, image: 'nginx:2', container: 'app' }, 'k8s').manifest) as { spec: { replicas: number; template: { spec: { containers: Array<{ image: string }> } } } };
    assert.equal(next.spec.replicas, 3);
    assert.equal(next.spec.template.spec.containers[0]!.image, 'nginx:2');
  });
});
