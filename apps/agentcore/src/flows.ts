import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError, errorMessage, type Logger } from '@agent/grpc-kit';
import { afterUpdate, asksAny, changedSpec, checkUpdate, kindRow, stateOf, updateDiff } from '@agent/kinds';
import { type internalv1, v1 } from '@agent/proto';
import type { ObjectRecord, ObjectTable } from './objects';
import { PEER_TIMEOUT_MS, type Peers } from './peers';
import type { Segmentation } from './segmentation';

const { State, EventType } = v1;

/** An event other than a create: the object it is for, and what it does. */
export interface Plan {
  readonly rec: ObjectRecord;
  readonly type: v1.EventType;
  readonly wait: boolean;
  readonly run: () => Promise<void>;
  readonly undo?: () => void;
}

/**
 * The flows of the design (create, update, delete, push on/off/once) through
 * the manager, collector and reporter. Each runs on its object's queue; every
 * change of the object goes through the object table.
 */
export class Flows {
  constructor(
    private readonly objects: ObjectTable,
    private readonly peers: Peers,
    private readonly opts: { waitTimeoutMs: number },
    private readonly log: Logger,
    private readonly network: Pick<Segmentation, 'beforeStart' | 'refresh'>,
  ) {}

  /** What an event other than a create does, to which object; throws when the object cannot take it now. */
  plan(req: internalv1.PublishRequest): Plan {
    if (req.update) {
      const u = req.update;
      const rec = this.objects.live(u.objectId, 'update');
      this.objects.requireManaged(rec, 'update');
      // What the object's driver cannot do, limits that would not go with its own, and a bad change of the kind's own are refused now, before any call.
      checkUpdate(kindRow(rec.object.spec?.kind ?? v1.Kind.KIND_UNSPECIFIED), u.resources, rec.object.spec?.resources);
      const changed = rec.object.spec ? changedSpec(rec.object.spec, u) : undefined;
      return { rec, type: EventType.EVENT_TYPE_UPDATE, wait: u.wait, run: () => this.runUpdate(rec, u, changed) };
    }
    if (req.delete) {
      const rec = this.objects.existing(req.delete.objectId);
      if (rec.object.state === State.STATE_DELETED || rec.deleteRequested) throw new FailedPreconditionError(`object ${rec.object.objectId} is already deleted`);
      this.objects.requireManaged(rec, 'delete');
      rec.deleteRequested = true;
      return { rec, type: EventType.EVENT_TYPE_DELETE, wait: req.delete.wait, run: () => this.runDelete(rec), undo: () => (rec.deleteRequested = false) };
    }
    if (req.pushOn) {
      const p = req.pushOn;
      const rec = this.objects.live(p.objectId, 'push');
      return { rec, type: EventType.EVENT_TYPE_PUSH_ON, wait: p.wait, run: () => this.runPushOn(rec, p.intervalMs) };
    }
    if (req.pushOff) {
      const rec = this.objects.live(req.pushOff.objectId, 'push off');
      return { rec, type: EventType.EVENT_TYPE_PUSH_OFF, wait: req.pushOff.wait, run: () => this.runPushOff(rec) };
    }
    throw new InvalidArgumentError('event', 'one of create, update, delete, push_on, push_off is required');
  }

  async runCreate(rec: ObjectRecord): Promise<void> {
    const { manager } = this.peers;
    const objectId = rec.object.objectId;
    try {
      await this.network.beforeStart(rec);
      const rt = await manager.call('createObject', { objectId, spec: rec.object.spec }, { timeoutMs: this.opts.waitTimeoutMs });
      this.objects.setRuntime(rec, rt);
      // Its address is known now: the policy follows it before the create is done.
      await this.network.refresh(rec);
    } catch (err) {
      await this.objects.setState(rec, State.STATE_FAILED, errorMessage(err));
      await this.announce(rec);
      throw err;
    }
    try {
      await this.giveCollectTask(rec);
    } catch (err) {
      // No half-made object: undo the create.
      await manager.call('deleteObject', { objectId, spec: rec.object.spec, runtime: rec.runtime }, { timeoutMs: this.opts.waitTimeoutMs }).catch((e: unknown) => this.log.error('undo create failed', { objectId, err: e }));
      await this.objects.setState(rec, State.STATE_FAILED, `collect task: ${errorMessage(err)}`);
      await this.announce(rec);
      throw err;
    }
    // A workload that ended already is STOPPED with its status: it was made. One whose driver
    // says where it stands (k8s: PENDING while it rolls out) is at that, with the driver's reason.
    const rt = rec.runtime;
    const exitCode = rt?.running === false ? rt.exitCode : undefined;
    await this.objects.setState(rec, rt ? stateOf(rt) : State.STATE_RUNNING, rt?.state ? rt.reason : exitCode ? `exited with code ${exitCode}` : '');
    await this.announce(rec);
  }

  /** The reporter tells the upstream; a reporter that is down does not fail the flow. */
  async announce(rec: ObjectRecord): Promise<void> {
    await this.peers.reporter
      .call('announce', v1.Object.fromPartial(rec.object), { timeoutMs: PEER_TIMEOUT_MS })
      .catch((err: unknown) => this.log.warn('announce to reporter failed', { objectId: rec.object.objectId, reason: errorMessage(err) }));
  }

  /** changed: the spec after the kind's own changes, when the request asks some (planned at accept). */
  private async runUpdate(rec: ObjectRecord, u: v1.UpdateRequest, changed: v1.ObjectSpec | undefined): Promise<void> {
    // A workload whose driver says it is still getting ready (k8s PENDING, after its create) can be changed too: that is how a bad image is fixed.
    this.requireState(rec, 'update', State.STATE_RUNNING, State.STATE_STOPPED, ...(rec.runtime?.state ? [State.STATE_PENDING] : []));
    const spec = rec.object.spec ?? v1.ObjectSpec.fromPartial({});
    // Again against its limits now: an update queued before this one may have moved them.
    checkUpdate(kindRow(spec.kind), u.resources, spec.resources);
    // Work out what changed: only dimensions that differ from what the object has go to the driver.
    const change = updateDiff(u.resources, rec.object.appliedResources);
    const labelsChanged = Object.keys(u.labels).length > 0;
    if (asksAny(change) || changed) {
      const next = { ...(changed ?? spec), resources: afterUpdate(spec.resources, u.resources) };
      try {
        const rt = await this.peers.manager.call('updateObject', { objectId: rec.object.objectId, resources: change, kind: spec.kind, runtime: rec.runtime, spec: next }, { timeoutMs: this.opts.waitTimeoutMs });
        this.objects.setRuntime(rec, rt);
        if (rt.state) rec.object.state = rt.state; // a rollout under way is PENDING again
      } catch (err) {
        rec.object.lastError = `update: ${errorMessage(err)}`;
        this.objects.commitWithEvent(rec);
        throw err;
      }
      Object.assign(spec, next);
    }
    if (labelsChanged) spec.labels = { ...u.labels };
    rec.object.lastError = rec.runtime?.state ? rec.runtime.reason : '';
    this.objects.commitWithEvent(rec);
  }

  private async runDelete(rec: ObjectRecord): Promise<void> {
    const { manager, collector, reporter } = this.peers;
    const objectId = rec.object.objectId;
    const ignoreMissing = (err: unknown): void => {
      if (!(err instanceof NotFoundError)) throw err;
    };
    try {
      if (rec.object.pushing) await reporter.call('stopReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
      if (rec.hasCollectTask) await collector.call('deleteTask', { objectId }, { timeoutMs: PEER_TIMEOUT_MS }).catch(ignoreMissing);
      rec.hasCollectTask = false;
      rec.object.pushing = false;
      rec.object.pushIntervalMs = 0;
      // Also with no runtime (a failed or interrupted create): whatever exists of it goes.
      await manager.call('deleteObject', { objectId, spec: rec.object.spec, runtime: rec.runtime }, { timeoutMs: this.opts.waitTimeoutMs }).catch(ignoreMissing);
    } catch (err) {
      rec.deleteRequested = false; // the user may try again
      rec.object.lastError = `delete: ${errorMessage(err)}`;
      await this.objects.commit(rec).catch(() => undefined); // the failure reported is the one above
      throw err;
    }
    rec.runtime = undefined;
    rec.object.pid = 0;
    this.objects.releaseName(rec);
    await this.objects.setState(rec, State.STATE_DELETED, '');
    await this.announce(rec);
  }

  private async runPushOn(rec: ObjectRecord, intervalMs: number): Promise<void> {
    this.requireState(rec, 'push', State.STATE_RUNNING, State.STATE_STOPPED);
    const objectId = rec.object.objectId;
    await this.peers.collector.call('setPush', { objectId, intervalMs }, { timeoutMs: PEER_TIMEOUT_MS });
    await this.peers.reporter.call('startReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
    rec.object.pushing = true;
    rec.object.pushIntervalMs = intervalMs;
    this.objects.commitWithEvent(rec);
  }

  private async runPushOff(rec: ObjectRecord): Promise<void> {
    const objectId = rec.object.objectId;
    if (!rec.object.pushing) return;
    await this.peers.reporter.call('stopReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
    if (rec.hasCollectTask) await this.peers.collector.call('setPush', { objectId, intervalMs: 0 }, { timeoutMs: PEER_TIMEOUT_MS });
    rec.object.pushing = false;
    rec.object.pushIntervalMs = 0;
    this.objects.commitWithEvent(rec);
  }

  async pushOnce(objectId: string): Promise<v1.Report> {
    const rec = this.objects.existing(objectId);
    this.requireState(rec, 'report', State.STATE_RUNNING, State.STATE_STOPPED);
    const report = await this.peers.collector.call('collectOnce', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
    await this.peers.reporter.call('reportOnce', report, { timeoutMs: PEER_TIMEOUT_MS });
    return report;
  }

  private requireState(rec: ObjectRecord, what: string, ...states: v1.State[]): void {
    if (!states.includes(rec.object.state)) {
      throw new FailedPreconditionError(`cannot ${what} object ${rec.object.objectId} in state ${State[rec.object.state]}${rec.object.lastError ? ` (${rec.object.lastError})` : ''}`);
    }
  }

  /**
   * Gives the collector this object's task, bound to its current cgroup and
   * pid, at its push rate. One it already has is kept (a collector that did
   * not restart); with replace, made anew (a container that started again
   * has a new pid).
   */
  async giveCollectTask(rec: ObjectRecord, replace = false): Promise<void> {
    const { collector } = this.peers;
    const objectId = rec.object.objectId;
    if (replace && rec.hasCollectTask) await collector.call('deleteTask', { objectId }, { timeoutMs: PEER_TIMEOUT_MS }).catch(() => undefined);
    const spec = rec.object.spec;
    const target: internalv1.CollectTarget = {
      objectId,
      kind: spec?.kind ?? v1.Kind.KIND_UNSPECIFIED,
      runtime: rec.runtime,
      host: false,
      name: spec?.name ?? '',
      image: spec?.container?.image ?? '',
      origin: rec.object.origin,
    };
    // Claimed before the call, so that cleanup never takes a task being made for a dead one.
    rec.hasCollectTask = true;
    await collector.call('createTask', target, { timeoutMs: PEER_TIMEOUT_MS }).catch((err: unknown) => {
      if (err instanceof AlreadyExistsError) return;
      rec.hasCollectTask = false;
      throw err;
    });
    if (rec.object.pushing) await collector.call('setPush', { objectId, intervalMs: rec.object.pushIntervalMs }, { timeoutMs: PEER_TIMEOUT_MS });
  }

  /** The workload went away outside the agent: no tasks, no name, DELETED. */
  async forget(rec: ObjectRecord, reason: string): Promise<void> {
    const objectId = rec.object.objectId;
    if (rec.object.pushing) await this.peers.reporter.call('stopReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS }).catch(() => undefined);
    if (rec.hasCollectTask) await this.peers.collector.call('deleteTask', { objectId }, { timeoutMs: PEER_TIMEOUT_MS }).catch(() => undefined);
    rec.hasCollectTask = false;
    rec.object.pushing = false;
    rec.object.pushIntervalMs = 0;
    rec.runtime = undefined;
    rec.object.pid = 0;
    this.objects.releaseName(rec);
    await this.objects.setState(rec, State.STATE_DELETED, reason === 'removed' ? '' : reason);
    await this.announce(rec);
  }
}
