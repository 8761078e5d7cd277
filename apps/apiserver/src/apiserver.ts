import type { ClientReadableStream, ServerWritableStream } from '@grpc/grpc-js';
import { type AgentConfig, GrpcService, HealthComponent, Module } from '@agent/option';
import {
  InvalidArgumentError,
  Logger,
  Role,
  callerOf,
  fromGrpcError,
  publicListeners,
  serverStream,
  startGrpcServer,
  unary,
  type Access,
  type Answer,
  type Encoded,
  type Fields,
  type Peer,
  type RunningServer,
} from '@agent/grpc-kit';
import { policyv1, v1, type internalv1 } from '@agent/proto';
import { validateFlowFilter, validateListFlows, validatePolicy } from './validate-policy';
import { admitWorkload, redactWorkload } from '@agent/kinds';
import { checkObjectId, validateCreate, validateList, validatePushOn, validateUpdate } from './validate';

/** Who may call what: readers read (and take one report); everything else is the admin's. */
export const API_ACCESS: Access = {
  roles: [Role.Admin],
  methods: {
    Get: [Role.Admin, Role.Reader],
    List: [Role.Admin, Role.Reader],
    GetEvent: [Role.Admin, Role.Reader],
    Watch: [Role.Admin, Role.Reader],
    PushOnce: [Role.Admin, Role.Reader],
  },
};

/** Readers may read the policy and the flows; only admins change the policy or quarantine. */
export const POLICY_ACCESS: Access = { roles: [Role.Admin], methods: { GetPolicy: [Role.Admin, Role.Reader], ListFlows: [Role.Admin, Role.Reader], WatchFlows: [Role.Admin, Role.Reader] } };

/** A reader sees what each kind hides of a spec redacted (environment values: passwords live there). */
function redact(o: v1.Object): v1.Object {
  return o.spec ? { ...o, spec: redactWorkload(o.spec) } : o;
}

type Call = object;
const isReader = (call: Call): boolean => callerOf(call)?.role !== Role.Admin;

/**
 * Where Get and List read agentcore's objects: its table itself when both
 * run in one process (a read is then no hop at all), else a call to it.
 * Each answer is the caller's own copy.
 */
export interface ObjectReads {
  getObject(objectId: string): v1.Object | Promise<v1.Object>;
  /** The object's wire form, kept between its changes (agentcore's table in this process): what an admin's Get sends. */
  encodedObject?(objectId: string): Encoded<v1.Object>;
  listObjects(req: v1.ListRequest): v1.ListResponse | Promise<v1.ListResponse>;
  /** A change made through this apiserver was answered: reads that begin after must show it (a copy waits for it). */
  changed?(): void;
}

/** Reads by calling agentcore (the apiserver in a process of its own). */
export function readsThrough(core: Peer<internalv1.AgentCoreClient>): ObjectReads {
  return {
    getObject: (objectId) => core.call('getObject', { objectId }, { timeoutMs: 10_000 }),
    listObjects: (req) => core.call('listObjects', req, { timeoutMs: 10_000 }),
  };
}

/**
 * Bus In: agent.v1.AgentService. Validates each request, publishes an event
 * to agentcore and answers with the publish result (or, with wait=true, the
 * outcome). Reads go to agentcore, which owns the objects (reads).
 */
export class ApiServer {
  constructor(
    private readonly core: Peer<internalv1.AgentCoreClient>,
    private readonly reads: ObjectReads,
    private readonly opts: { minIntervalMs: number; waitTimeoutMs: number; config: AgentConfig },
    private readonly log: Logger,
  ) {}

  /** Every mutating call is logged with who made it. */
  private audit(call: Call, method: string, fields: Fields): void {
    const c = callerOf(call);
    this.log.info('mutating call', { method, role: c?.role ?? 'unknown', via: c?.via ?? 'unknown', ...(c?.subject !== undefined ? { subject: c.subject } : {}), ...fields });
  }

  private publish(event: internalv1.PublishRequest, wait: boolean): Promise<v1.EventAck> {
    // A wait may last as long as the flow; a plain publish is quick.
    return this.changing(this.core.call('publish', event, { timeoutMs: wait ? this.opts.waitTimeoutMs + 5_000 : 10_000 }));
  }

  /** A call that may change objects: once it is answered (either way), reads see what it did. */
  private changing<T>(call: Promise<T>): Promise<T> {
    return call.finally(() => this.reads.changed?.());
  }

  /** agent.v1.PolicyService: validated here, applied by agentcore on its system queue. */
  policyImplementation(): policyv1.PolicyServiceServer {
    const log = this.log;
    return {
      applyPolicy: unary(log, async (p: policyv1.Policy, call) => {
        this.audit(call, 'ApplyPolicy', { revision: p.revision, groups: p.groups.length, rules: p.rules.length });
        validatePolicy(p);
        return this.changing(this.core.call('applyPolicy', p, { timeoutMs: 30_000 }));
      }),
      getPolicy: unary(log, async (r: policyv1.GetPolicyRequest) => this.core.call('getPolicy', r, { timeoutMs: 10_000 })),
      setQuarantine: unary(log, async (r: policyv1.SetQuarantineRequest, call) => {
        this.audit(call, 'SetQuarantine', { objectId: r.objectId, quarantined: r.quarantined });
        checkObjectId('object_id', r.objectId);
        return this.changing(this.core.call('setQuarantine', r, { timeoutMs: 30_000 }));
      }),
      listFlows: unary(log, async (r: policyv1.ListFlowsRequest) => {
        validateListFlows(r);
        return this.core.call('listFlows', r, { timeoutMs: 10_000 });
      }),
      watchFlows: serverStream(log, (r: policyv1.WatchFlowsRequest, call) => {
        validateFlowFilter(r);
        return relay(this.core.client.watchFlows(r, this.core.traceMetadata()), call, (f) => f);
      }),
    };
  }

  implementation(): v1.AgentServiceServer {
    const log = this.log;
    return {
      create: unary(log, async (r: v1.CreateRequest, call) => {
        this.audit(call, 'Create', { name: r.spec?.name ?? '', kind: v1.Kind[r.spec?.kind ?? 0] ?? '' });
        validateCreate(r);
        if (r.spec) r.spec = admitWorkload(r.spec, this.opts.config);
        return this.publish({ create: r }, r.wait);
      }),
      update: unary(log, async (r: v1.UpdateRequest, call) => {
        this.audit(call, 'Update', { objectId: r.objectId });
        validateUpdate(r);
        return this.publish({ update: r }, r.wait);
      }),
      delete: unary(log, async (r: v1.DeleteRequest, call) => {
        this.audit(call, 'Delete', { objectId: r.objectId });
        checkObjectId('object_id', r.objectId);
        return this.publish({ delete: r }, r.wait);
      }),
      pushOn: unary(log, async (r: v1.PushOnRequest, call) => {
        this.audit(call, 'PushOn', { objectId: r.objectId });
        validatePushOn(r, this.opts.minIntervalMs);
        return this.publish({ pushOn: r }, r.wait);
      }),
      pushOff: unary(log, async (r: v1.PushOffRequest, call) => {
        this.audit(call, 'PushOff', { objectId: r.objectId });
        checkObjectId('object_id', r.objectId);
        return this.publish({ pushOff: r }, r.wait);
      }),
      pushOnce: unary(log, async (r: v1.PushOnceRequest) => {
        checkObjectId('object_id', r.objectId);
        return this.core.call('pushOnce', r, { timeoutMs: 10_000 });
      }),
      // Not async: from agentcore's table in this process, the answer leaves in the same turn (unary), encoded once per change for an admin.
      get: unary(log, (r: v1.GetRequest, call): Answer<v1.Object> | Promise<v1.Object> => {
        checkObjectId('object_id', r.objectId);
        const reader = isReader(call);
        if (!reader && this.reads.encodedObject) return this.reads.encodedObject(r.objectId);
        const shown = (o: v1.Object): v1.Object => (reader ? redact(o) : o);
        const o = this.reads.getObject(r.objectId);
        return o instanceof Promise ? o.then(shown) : shown(o);
      }),
      list: unary(log, async (r: v1.ListRequest, call) => {
        validateList(r);
        const res = await this.reads.listObjects(r);
        return isReader(call) ? { ...res, objects: res.objects.map(redact) } : res;
      }),
      getEvent: unary(log, async (r: v1.GetEventRequest) => {
        if (r.eventId === '') throw new InvalidArgumentError('event_id', 'required');
        checkObjectId('event_id', r.eventId);
        return this.core.call('getEvent', r, { timeoutMs: 10_000 });
      }),
      watch: serverStream(log, (r: v1.WatchRequest, call) => this.watch(r, call)),
    };
  }

  /** Relays agentcore's Watch stream. */
  private watch(req: v1.WatchRequest, call: ServerWritableStream<v1.WatchRequest, v1.WatchEvent>): Promise<void> {
    checkObjectId('object_id', req.objectId);
    const reader = isReader(call);
    return relay(this.core.client.watch(req, this.core.traceMetadata()), call, (e: v1.WatchEvent) => (reader && e.object ? { ...e, object: redact(e.object) } : e));
  }
}

/** Relays one of agentcore's streams to the caller until either ends; errors keep their status. */
function relay<T>(upstream: ClientReadableStream<T>, call: ServerWritableStream<unknown, T>, map: (item: T) => T): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    upstream.on('data', (item: T) => call.write(map(item)));
    upstream.on('end', () => resolve());
    upstream.on('error', (err: Error) => {
      if (call.cancelled) resolve();
      else reject(err);
    });
    call.on('cancelled', () => upstream.cancel());
  }).catch((err: unknown) => {
    throw fromGrpcError(err);
  });
}

/** reads: agentcore's own table when it runs in this process; by default, calls to it. */
export async function startApiServer(config: AgentConfig, core: Peer<internalv1.AgentCoreClient>, reads: ObjectReads = readsThrough(core)): Promise<RunningServer> {
  const log = new Logger(Module.ApiServer, config.logLevel);
  const api = new ApiServer(
    core,
    reads,
    { minIntervalMs: config.minIntervalMs, waitTimeoutMs: config.waitTimeoutMs, config },
    log,
  );
  const server = await startGrpcServer({
    listeners: publicListeners(config),
    log,
    services: [
      { name: GrpcService.Agent, definition: v1.AgentServiceService, implementation: api.implementation(), access: API_ACCESS },
      { name: GrpcService.Policy, definition: policyv1.PolicyServiceService, implementation: api.policyImplementation(), access: POLICY_ACCESS },
    ],
  });
  server.health.setAll(true);
  // Whether a change can be recorded is agentcore's to know; callers of this server see it too.
  server.health.follow(core.address, HealthComponent.Store);
  return server;
}
