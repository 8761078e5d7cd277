import type { ServerWritableStream } from '@grpc/grpc-js';
import { type AgentConfig, GrpcService, Module } from '@agent/option';
import { InvalidArgumentError, Logger, fromGrpcError, serverStream, startGrpcServer, unary, type Peer, type RunningServer } from '@agent/grpc-kit';
import { v1, type internalv1 } from '@agent/proto';
import { checkObjectId, validateCreate, validateList, validatePushOn, validateUpdate } from './validate';

/**
 * Bus In: agent.v1.AgentService. Validates each request, publishes an event
 * to agentcore and answers with the publish result (or, with wait=true, the
 * outcome). Reads go to agentcore, which owns the objects.
 */
export class ApiServer {
  constructor(
    private readonly core: Peer<internalv1.AgentCoreClient>,
    private readonly opts: { minIntervalMs: number; waitTimeoutMs: number },
    private readonly log: Logger,
  ) {}

  private publish(event: internalv1.PublishRequest, wait: boolean): Promise<v1.EventAck> {
    // A wait may last as long as the flow; a plain publish is quick.
    return this.core.call('publish', event, { timeoutMs: wait ? this.opts.waitTimeoutMs + 5_000 : 10_000 });
  }

  implementation(): v1.AgentServiceServer {
    const log = this.log;
    return {
      create: unary(log, async (r: v1.CreateRequest) => {
        validateCreate(r);
        return this.publish({ create: r }, r.wait);
      }),
      update: unary(log, async (r: v1.UpdateRequest) => {
        validateUpdate(r);
        return this.publish({ update: r }, r.wait);
      }),
      delete: unary(log, async (r: v1.DeleteRequest) => {
        checkObjectId('object_id', r.objectId);
        return this.publish({ delete: r }, r.wait);
      }),
      pushOn: unary(log, async (r: v1.PushOnRequest) => {
        validatePushOn(r, this.opts.minIntervalMs);
        return this.publish({ pushOn: r }, r.wait);
      }),
      pushOff: unary(log, async (r: v1.PushOffRequest) => {
        checkObjectId('object_id', r.objectId);
        return this.publish({ pushOff: r }, r.wait);
      }),
      pushOnce: unary(log, async (r: v1.PushOnceRequest) => {
        checkObjectId('object_id', r.objectId);
        return this.core.call('pushOnce', r, { timeoutMs: 10_000 });
      }),
      get: unary(log, async (r: v1.GetRequest) => {
        checkObjectId('object_id', r.objectId);
        return this.core.call('getObject', r, { timeoutMs: 10_000 });
      }),
      list: unary(log, async (r: v1.ListRequest) => {
        validateList(r);
        return this.core.call('listObjects', r, { timeoutMs: 10_000 });
      }),
      getEvent: unary(log, async (r: v1.GetEventRequest) => {
        if (r.eventId === '') throw new InvalidArgumentError('event_id', 'required');
        checkObjectId('event_id', r.eventId);
        return this.core.call('getEvent', r, { timeoutMs: 10_000 });
      }),
      watch: serverStream(log, (r: v1.WatchRequest, call) => this.watch(r, call)),
    };
  }

  /** Relays agentcore's Watch stream; errors keep their status. */
  private watch(req: v1.WatchRequest, call: ServerWritableStream<v1.WatchRequest, v1.WatchEvent>): Promise<void> {
    checkObjectId('object_id', req.objectId);
    const upstream = this.core.client.watch(req, this.core.traceMetadata());
    return new Promise<void>((resolve, reject) => {
      upstream.on('data', (e: v1.WatchEvent) => call.write(e));
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
}

export async function startApiServer(config: AgentConfig, core: Peer<internalv1.AgentCoreClient>, address = config.apiListen): Promise<RunningServer> {
  const log = new Logger(Module.ApiServer, config.logLevel);
  const api = new ApiServer(core, { minIntervalMs: config.minIntervalMs, waitTimeoutMs: config.waitTimeoutMs }, log);
  const server = await startGrpcServer({
    address,
    log,
    services: [{ name: GrpcService.Agent, definition: v1.AgentServiceService, implementation: api.implementation() }],
  });
  server.health.setAll(true);
  return server;
}
