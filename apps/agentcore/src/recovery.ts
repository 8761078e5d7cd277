import { NotFoundError, errorMessage, type Logger } from '@agent/grpc-kit';
import { findKind } from '@agent/kinds';
import { v1 } from '@agent/proto';
import type { EventLog } from './events';
import type { Flows } from './flows';
import type { ObjectRecord, ObjectTable } from './objects';
import { PEER_TIMEOUT_MS, type Peers } from './peers';
import type { DamagedRecord } from './records';
import type { Scheduler } from './scheduler';

const { State, EventStatus, EventType } = v1;

/** What agentcore starts from after a restart: its objects' records and the events a kill interrupted. */
export class Recovery {
  constructor(
    private readonly objects: ObjectTable,
    private readonly events: EventLog,
    private readonly flows: Flows,
    private readonly scheduler: Scheduler,
    private readonly peers: Peers,
    private readonly opts: { waitTimeoutMs: number },
    private readonly log: Logger,
  ) {}

  /**
   * After a restart: every recorded object is found again (containers by id or
   * label, processes by pid and start time), watched and collected again, and
   * its pushing resumed. One whose workload vanished meanwhile becomes DELETED
   * (container, cgroup) or STOPPED (process). Nothing is created anew.
   */
  async recover(): Promise<DamagedRecord[]> {
    const { records, damaged } = await this.objects.load();
    for (const d of damaged) this.log.error('damaged store record skipped', { key: d.key, reason: d.reason });
    let adopted = 0;
    for (const saved of records) {
      const rec = this.objects.restore(saved);
      const { object } = rec;
      if (object.state === State.STATE_DELETED || object.state === State.STATE_FAILED) continue;
      await this.readopt(rec).catch((err: unknown) => this.log.error('object not recovered', { objectId: object.objectId, reason: errorMessage(err) }));
      adopted++;
    }
    if (records.length > 0 || damaged.length > 0) this.log.info('recovered objects', { recorded: records.length, adopted, damaged: damaged.length });
    await this.resumeEvents();
    return damaged;
  }

  /**
   * Events a kill interrupted run again, in their order: a create whose
   * workload recovery did not find whole (its remains are gone by now), and
   * every other kind. A create recovery adopted is settled by the object's state.
   */
  private async resumeEvents(): Promise<void> {
    const { interrupted } = await this.events.load();
    let resumed = 0;
    const creating = new Set<string>();
    for (const { event, request } of interrupted) {
      const rec = this.objects.get(event.objectId);
      try {
        if (event.type === EventType.EVENT_TYPE_CREATE && rec?.object.state === State.STATE_PENDING) {
          this.scheduler.schedule(rec, event, () => this.flows.runCreate(rec));
          creating.add(rec.object.objectId);
          resumed++;
          continue;
        }
        if (event.type === EventType.EVENT_TYPE_CREATE || !request || !rec) {
          const made = event.type === EventType.EVENT_TYPE_CREATE && (rec?.object.state === State.STATE_RUNNING || rec?.object.state === State.STATE_STOPPED);
          const why = rec?.object.lastError ? `: ${rec.object.lastError}` : '';
          await this.events.finish(event, made ? EventStatus.EVENT_STATUS_SUCCEEDED : EventStatus.EVENT_STATUS_FAILED, made ? '' : `interrupted by an agent restart${why}`);
          continue;
        }
        const plan = this.flows.plan(request);
        this.scheduler.schedule(plan.rec, event, plan.run);
        resumed++;
      } catch (err) {
        await this.events.finish(event, EventStatus.EVENT_STATUS_FAILED, `not resumed after an agent restart: ${errorMessage(err)}`).catch(() => undefined);
      }
    }
    if (interrupted.length > 0) this.log.info('events interrupted by the restart', { interrupted: interrupted.length, resumed });
    // A PENDING record with no create event: the kill came between the two writes, so the
    // create was never acknowledged and nothing was started for it. It goes.
    for (const rec of this.objects.all()) {
      const objectId = rec.object.objectId;
      if (rec.object.state !== State.STATE_PENDING || rec.object.origin !== v1.Origin.ORIGIN_CREATED || creating.has(objectId)) continue;
      try {
        await this.objects.remove(rec);
        this.log.info('unacknowledged create dropped', { objectId });
      } catch (err) {
        await this.objects.setState(rec, State.STATE_FAILED, `create was never acknowledged: ${errorMessage(err)}; delete it`).catch(() => undefined);
      }
    }
  }

  private async readopt(rec: ObjectRecord): Promise<void> {
    const { manager, reporter } = this.peers;
    const objectId = rec.object.objectId;
    const wasPending = rec.object.state === State.STATE_PENDING;
    try {
      const rt = await manager.call('adoptObject', { objectId, spec: rec.object.spec, runtime: rec.runtime }, { timeoutMs: this.opts.waitTimeoutMs });
      this.objects.setRuntime(rec, rt);
    } catch (err) {
      if (!(err instanceof NotFoundError)) {
        await this.objects.setState(rec, State.STATE_FAILED, `recovery: ${errorMessage(err)}`);
        return;
      }
      if (wasPending) {
        // Half-made or never made: what exists of it goes, and the create runs again (resumeEvents).
        await manager.call('deleteObject', { objectId, spec: rec.object.spec }, { timeoutMs: this.opts.waitTimeoutMs }).catch((e: unknown) =>
          this.objects.setState(rec, State.STATE_FAILED, `create interrupted by an agent restart; what it made could not be removed: ${errorMessage(e)}`),
        );
        return;
      }
      rec.object.pushing = false;
      rec.object.pushIntervalMs = 0;
      if (findKind(rec.object.spec?.kind)?.goneWhileDown === State.STATE_STOPPED) return this.objects.setState(rec, State.STATE_STOPPED, 'exited while the agent was down');
      this.objects.releaseName(rec);
      rec.runtime = undefined;
      return this.objects.setState(rec, State.STATE_DELETED, 'removed while the agent was down');
    }
    await this.flows.giveCollectTask(rec);
    if (rec.object.pushing) await reporter.call('startReport', { objectId }, { timeoutMs: PEER_TIMEOUT_MS });
    const rt = rec.runtime;
    // A driver that says where its workload stands (k8s) is taken at its word.
    if (rt?.state) return this.objects.setState(rec, rt.state, rt.reason);
    const running = rt?.running !== false;
    const lastError = running ? '' : rec.object.state === State.STATE_STOPPED ? rec.object.lastError : 'exited while the agent was down';
    await this.objects.setState(rec, running ? State.STATE_RUNNING : State.STATE_STOPPED, lastError);
  }
}
