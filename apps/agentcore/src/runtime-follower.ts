import type { Logger, Peer } from '@agent/grpc-kit';
import { internalv1, v1 } from '@agent/proto';
import { stateOf } from '@agent/kinds';
import type { Flows } from './flows';
import type { ObjectRecord, ObjectTable } from './objects';
import { PEER_TIMEOUT_MS } from './peers';

const { State } = v1;

/** Follows workloads that stop, start, appear or vanish by themselves, from the manager's WatchRuntime stream. */
export class RuntimeFollower {
  private stream: { cancel(): void } | undefined;
  private stopped = false;

  constructor(
    private readonly objects: ObjectTable,
    private readonly flows: Flows,
    private readonly manager: Peer<internalv1.ManagerClient>,
    private readonly log: Logger,
  ) {}

  /** Starts following (after recover). */
  start(): void {
    this.follow(250);
  }

  /** Stops for good: a stream that ends from here on is not followed again. */
  stop(): void {
    this.stopped = true;
    this.stream?.cancel();
  }

  /** Workloads that stop or start by themselves change their object's state, in order with its events. */
  private follow(backoffMs: number): void {
    if (this.stopped) return;
    const stream = this.manager.client.watchRuntime({}, this.manager.traceMetadata());
    this.stream = stream;
    stream.on('data', (e: internalv1.RuntimeEvent) => {
      backoffMs = 250;
      this.onRuntime(e);
    });
    stream.on('error', () => {
      if (this.stopped) return;
      setTimeout(() => this.follow(Math.min(backoffMs * 2, 5_000)), backoffMs).unref();
    });
  }

  private onRuntime(e: internalv1.RuntimeEvent): void {
    if (e.limitsRefused !== '') return this.limitsReverted(e);
    let rec = this.objects.get(e.objectId);
    if (!rec && e.spec) rec = this.discover(e);
    if (!rec) return;
    const r = rec;
    r.queue = r.queue.then(async () => {
      const s = r.object.state;
      if (s === State.STATE_DELETED || r.deleteRequested) return;
      if (e.removed) return this.flows.forget(r, e.reason);
      if (s !== State.STATE_RUNNING && s !== State.STATE_STOPPED && s !== State.STATE_PENDING) return;
      // A driver that says where its workload stands (k8s) is taken at its word, reason and all.
      const state = stateOf(e);
      const failed = !e.running && e.exitCode !== 0 && e.reason !== 'exited with code 0' && e.reason !== 'found';
      const why = e.state ? e.reason : failed ? e.reason : '';
      // The manager passes on every event; one that changes nothing (a create already saw the exit) is no news.
      const same = s === state && r.runtime?.running === e.running && (!e.state || r.object.lastError === why);
      if (same && !e.spec && !e.runtime) return;
      if (e.runtime) this.objects.setRuntime(r, e.runtime);
      else if (r.runtime) {
        r.runtime.running = e.running;
        r.runtime.state = e.state;
        r.runtime.reason = e.state ? e.reason : '';
      }
      if (e.spec && e.running) await this.flows.giveCollectTask(r, true);
      r.object.exitCode = e.running ? undefined : e.exitCode;
      await this.objects.setState(r, state, why);
      await this.flows.announce(r);
    }).catch((err: unknown) => this.log.warn('runtime event failed', { objectId: e.objectId, err }));
  }

  /**
   * Docker refused a limit change its cgroup had taken (the Update had
   * answered), and the cgroup went back: the object shows the limits the
   * workload holds now (read again, in order with its events: a later update
   * may have moved them since) and why in last_error.
   */
  private limitsReverted(e: internalv1.RuntimeEvent): void {
    const r = this.objects.get(e.objectId);
    if (!r) return;
    r.queue = r.queue.then(async () => {
      if (r.object.state === State.STATE_DELETED || r.deleteRequested || !r.runtime) return;
      const kind = r.object.spec?.kind ?? v1.Kind.KIND_UNSPECIFIED;
      const now = await this.manager.call('inspectObject', { objectId: r.object.objectId, kind, runtime: r.runtime }, { timeoutMs: PEER_TIMEOUT_MS }).catch(() => undefined);
      this.objects.setRuntime(r, now ?? { ...r.runtime, applied: e.applied });
      await this.objects.setState(r, r.object.state, e.limitsRefused);
      await this.flows.announce(r);
    }).catch((err: unknown) => this.log.warn('runtime event failed', { objectId: e.objectId, err }));
  }

  /** A container the agent did not create becomes an object of its own (origin DISCOVERED). */
  private discover(e: internalv1.RuntimeEvent): ObjectRecord {
    const rec = this.objects.discovered(e.objectId, v1.ObjectSpec.fromPartial(e.spec ?? {}));
    const spec = rec.object.spec;
    this.log.info('container discovered', { objectId: e.objectId, name: spec?.name, image: spec?.container?.image });
    return rec;
  }
}
