// A fake Kubernetes API server for tests (no real one can run here), held to
// the real kubectl: discovery, CRUD, server-side apply, watches with
// bookmarks and 410 Gone, and a control plane that runs Deployments,
// StatefulSets, Jobs and their Pods through their phases.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dump } from 'js-yaml';
import { Controller, seed } from './controller';
import type { KubeObject } from './json';
import { listen } from './listen';
import { Ops } from './ops';
import { handler } from './server';
import { Store } from './store';
import { OpenWatches } from './watch';

export { kubeTools, type KubeTools } from './tools';
export type { KubeObject } from './json';

export interface FakeKubeOptions {
  /** The one node; pods are bound to it. Default: os.hostname(). */
  readonly nodeName?: string;
  /** How often a watch with allowWatchBookmarks=true gets a BOOKMARK. Default 1000. */
  readonly bookmarkMs?: number;
  /** Events kept for watches to resume from; older resourceVersions get 410. Default 1000. */
  readonly historyLimit?: number;
  /** The control plane's step. Default 100. */
  readonly phaseMs?: number;
}

export interface FakeKube {
  /** http://127.0.0.1:<port>: plain HTTP, for fetch. */
  readonly url: string;
  /**
   * A kubeconfig (0600) whose current context "fake" reaches this server with
   * the token, over https on the same port (with the certificate as its CA):
   * kubectl sends no token over plain http.
   */
  readonly kubeconfig: string;
  readonly token: string;
  readonly nodeName: string;
  /** Drops the event history: a watch from an older resourceVersion gets 410 Expired. */
  compact(): void;
  /**
   * Compacts, then sends every open watch one ERROR 410 Expired and ends it,
   * as the apiserver does to a watcher left behind: informers must relist.
   */
  expireWatches(): void;
  /** A snapshot of the stored objects, of one kind ("Pod") or all. */
  objects(kind?: string): KubeObject[];
  close(): Promise<void>;
}

export async function startFakeKube(opts: FakeKubeOptions = {}): Promise<FakeKube> {
  const token = randomBytes(24).toString('hex');
  const store = new Store(opts.historyLimit ?? 1000);
  const ops = new Ops(store);
  const nodeName = (opts.nodeName ?? os.hostname()).toLowerCase();
  seed(ops, nodeName);
  const watches = new OpenWatches();
  const listener = await listen(handler({ ops, token, bookmarkMs: opts.bookmarkMs ?? 1000, watches }));
  const url = `http://127.0.0.1:${listener.port}`;
  const controller = new Controller(ops, nodeName, opts.phaseMs ?? 100);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-kube-'));
  const kubeconfig = path.join(dir, 'kubeconfig');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'fake', cluster: { server: `https://127.0.0.1:${listener.port}`, 'certificate-authority-data': Buffer.from(listener.ca).toString('base64') } }],
    users: [{ name: 'fake', user: { token } }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake', namespace: 'default' } }],
    'current-context': 'fake',
  };
  fs.writeFileSync(kubeconfig, dump(config), { mode: 0o600 });
  return {
    url,
    kubeconfig,
    token,
    nodeName,
    compact: () => store.compact(),
    expireWatches: () => {
      store.compact();
      watches.expire();
    },
    objects: (kind) => store.all().flatMap((s) => (kind === undefined || s.res.kind === kind ? [s.object] : [])),
    close: async () => {
      controller.stop();
      await listener.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
