import {
  type ChannelCredentials,
  type Client,
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { healthv1, internalv1 } from '@agent/proto';
import { GrpcService } from '@agent/option';
import { HealthRegistry } from './health';
import { addReflection } from './reflection';
import type { Logger } from './log';
import { connectLocal, type LocalPeer } from './client';
import { toGrpcStatus } from './status';
import { authorize, peerCertificate, refusal, setCaller, type Access, type Authenticate, type Caller } from './auth';
import type { Listener } from './listeners';
import { endSpan, serverSpan, TRACE_ID_HEADER, validTraceId } from './tracing';
import { Metadata } from '@grpc/grpc-js';
import { Undecodable, undecodableError } from './undecodable';
import { servedDefinition, type Answer } from './encoded';
import { countCall } from './call-metrics';
import { piped, PipeServer } from './pipe';
import { useIdTables } from './stream-tables';

export interface ServiceBinding {
  /** Fully qualified name, e.g. agent.v1.AgentService. */
  readonly name: string;
  readonly definition: ServiceDefinition;
  readonly implementation: UntypedServiceImplementation;
  /** Who may call which method. */
  readonly access: Access;
}

export interface RunningServer {
  /** The first listener's bound address (the real port when asked for :0). */
  readonly address: string;
  readonly port: number;
  /** Every listener's bound address, in the order given. */
  readonly addresses: readonly string[];
  readonly health: HealthRegistry;
  /** Stops taking calls, lets running ones finish for graceMs, then cancels them. */
  shutdown(graceMs?: number): Promise<void>;
  /** A peer for this server's (first) service from inside the same process: unary calls skip the network. */
  localPeer<C extends Client>(Ctor: new (address: string, creds: ChannelCredentials, options?: object) => C, token: string): LocalPeer<C>;
}

/**
 * A gRPC server with the given services plus grpc.health.v1 and server
 * reflection (v1 and v1alpha), so grpcurl and buf curl work without protos.
 * Each listener is its own grpc-js server, because each tells its callers its
 * own way; every call of our services is authenticated by its listener and
 * authorized by the service's access table before the handler runs. Health
 * and reflection stay open. Health starts NOT_SERVING; the caller flips it
 * when it is ready.
 */
export async function startGrpcServer(opts: {
  listeners: readonly Listener[];
  services: readonly ServiceBinding[];
  log: Logger;
}): Promise<RunningServer> {
  const names = opts.services.map((s) => s.name);
  // The services only the agent's own may call are also served on the pipe (pipe.ts).
  const internal = piped(opts.services);
  const served = [...names, ...(internal.length > 0 ? [GrpcService.Pipe] : [])];
  const health = new HealthRegistry(names);
  const servers: Server[] = [];
  const pipes: PipeServer[] = [];
  const addresses: string[] = [];
  let firstPort = 0;
  for (const listener of opts.listeners) {
    // Channelz off: no channelz service is served, and its bookkeeping is four closures and two clock reads per call.
    const server = new Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024, 'grpc.enable_channelz': 0 });
    const tls = listener.credentials?._isSecure() ?? false;
    for (const s of opts.services) server.addService(servedDefinition(s.definition), guard(opts.log, s, listener.authenticate, tls));
    if (internal.length > 0) {
      const pipe = new PipeServer(opts.log, internal, listener.authenticate, tls);
      server.addService(internalv1.PipeService, pipe.implementation);
      pipes.push(pipe);
    }
    server.addService(healthv1.HealthService, health.implementation);
    addReflection(server, [...served, 'grpc.health.v1.Health']);
    const [host, credentialsAddress] = splitAddress(listener.address);
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(credentialsAddress, listener.credentials ?? ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    listener.afterBind?.();
    // In time for the first session: bindAsync's callback and this continuation run before the loop polls for a connection.
    const idTables = useIdTables(server) > 0;
    const address = host === 'unix' ? listener.address : `${host}:${port}`;
    if (servers.length === 0) firstPort = port;
    servers.push(server);
    addresses.push(address);
    opts.log.info('grpc server listening', { address, services: served, tls, idTables });
  }
  const address = addresses[0];
  if (address === undefined) throw new Error('no listener');

  const first = opts.services[0];
  return {
    address,
    port: firstPort,
    addresses,
    health,
    localPeer: (Ctor, token) => {
      if (!first) throw new Error('no service to call');
      return connectLocal(Ctor, address, first.definition, first.implementation, token);
    },
    shutdown: async (graceMs = 5_000) => {
      health.setAll(false);
      health.close();
      const stopped = servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              server.forceShutdown();
              resolve();
            }, graceMs);
            server.tryShutdown(() => {
              clearTimeout(timer);
              resolve();
            });
          }),
      );
      // Once no new stream is taken: each pipe ends when its running calls are answered.
      for (const p of pipes) p.drain();
      await Promise.all(stopped);
    },
  };
}

/**
 * The service's handlers behind its listener's authentication and its access
 * table. A refused call never reaches the handler; the caller is kept for it
 * (callerOf). tls: the listener's credentials are TLS (a client certificate
 * may then tell the caller).
 */
function guard(log: Logger, binding: ServiceBinding, authenticate: Authenticate, tls: boolean): UntypedServiceImplementation {
  const out: UntypedServiceImplementation = {};
  for (const [key, handler] of Object.entries(binding.implementation)) {
    const method = binding.definition[key];
    if (!method) continue;
    const name = method.path.slice(method.path.lastIndexOf('/') + 1);
    const check = (call: { request: unknown; metadata: Metadata; getPeer(): string }): void => {
      let caller: Caller | undefined;
      try {
        caller = authenticate(call.metadata, peerCertificate(call, tls));
        authorize(binding.access, name, caller);
        setCaller(call, caller);
      } catch (err) {
        log.warn('call refused', { method: method.path, peer: call.getPeer(), ...refusal(caller, err) });
        throw err;
      }
      // Only an authorized caller learns what was wrong with the bytes it sent.
      if (call.request instanceof Undecodable) throw undecodableError(call.request);
    };
    if (method.responseStream && !method.requestStream) {
      const h = handler as (call: ServerWritableStream<unknown, unknown>) => void;
      out[key] = (call: ServerWritableStream<unknown, unknown>) => {
        try {
          check(call);
        } catch (err) {
          const st = mapError(log, method.path, err);
          countCall('server_stream', method.path, st.code);
          call.emit('error', st);
          return;
        }
        h(call);
      };
    } else if (!method.responseStream && !method.requestStream) {
      const h = handler as (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => void;
      out[key] = (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
        try {
          check(call);
        } catch (err) {
          const st = mapError(log, method.path, err);
          countCall('unary', method.path, st.code);
          cb(st);
          return;
        }
        h(call, cb);
      };
    } else {
      throw new Error(`${method.path}: client streams are not guarded`);
    }
  }
  return out;
}

function splitAddress(address: string): [string, string] {
  if (address.startsWith('unix:')) return ['unix', address];
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), address];
}

/**
 * Adapts a handler to grpc-js. Every thrown error goes through the one status
 * table; unexpected ones are logged with their stack and leave as INTERNAL
 * with a generic message. A handler that has its answer at once returns it
 * (a Get from the table in this process): it is sent in the same turn, with
 * no promise to settle first; one that waits returns a promise. Either may
 * be the response's bytes (Encoded).
 */
export function unary<Req, Res>(log: Logger, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Answer<Res> | Promise<Answer<Res>>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const path = call.getPath();
    serverSpan(log.module, path, call.metadata, (span) => {
      sendTraceId(call, validTraceId(span));
      const answered = (res: Answer<Res>): void => {
        endSpan(span, 0);
        countCall('unary', path, 0);
        callback(null, res as Res); // an Encoded answer is sent as it is (servedDefinition)
      };
      const failed = (err: unknown): void => {
        const st = mapError(log, path, err);
        endSpan(span, st.code, st.details);
        countCall('unary', path, st.code);
        callback(st);
      };
      let res: Answer<Res> | Promise<Answer<Res>>;
      try {
        res = fn(call.request, call);
      } catch (err) {
        return failed(err);
      }
      if (res instanceof Promise) res.then(answered, failed);
      else answered(res);
    });
  };
}

/** Response metadata trace-id: a user pastes it into Jaeger's search. */
function sendTraceId(call: { sendMetadata(md: Metadata): void }, traceId: string | undefined): void {
  if (traceId === undefined) return;
  const md = new Metadata();
  md.set(TRACE_ID_HEADER, traceId);
  call.sendMetadata(md);
}

/** Same for server streams: the handler writes, and its promise ends the stream. */
export function serverStream<Req, Res>(log: Logger, fn: (req: Req, call: ServerWritableStream<Req, Res>) => Promise<void>) {
  return (call: ServerWritableStream<Req, Res>): void => {
    serverSpan(log.module, call.getPath(), call.metadata, (span) => {
      sendTraceId(call, validTraceId(span));
      fn(call.request, call).then(
        () => {
          endSpan(span, 0);
          countCall('server_stream', call.getPath(), 0);
          call.end();
        },
        (err: unknown) => {
          const st = mapError(log, call.getPath(), err);
          endSpan(span, call.cancelled ? 1 : st.code, st.details);
          countCall('server_stream', call.getPath(), call.cancelled ? 1 : st.code);
          if (!call.cancelled) call.emit('error', st);
        },
      );
    });
  };
}

/**
 * A writer for a server stream whose caller may stop reading: while more than
 * backlog messages wait to be sent, a new one is dropped rather than held
 * (memory stays bounded); onDrop hears of the first drop and every
 * everyDrops-th after it, with the count so far and the message dropped.
 */
export function boundedWriter<T>(
  call: { readonly writableLength: number; write(msg: T): unknown },
  opts: { readonly backlog: number; readonly everyDrops: number; readonly onDrop: (dropped: number, msg: T) => void },
): (msg: T) => void {
  let dropped = 0;
  return (msg) => {
    if (call.writableLength < opts.backlog) return void call.write(msg);
    if (dropped++ % opts.everyDrops === 0) opts.onDrop(dropped, msg);
  };
}

function mapError(log: Logger, method: string, err: unknown) {
  const st = toGrpcStatus(err);
  if (st.unexpected) log.error('unexpected error', { method, err });
  else log.debug('call failed', { method, code: st.code, details: st.details });
  return { code: st.code, details: st.details, metadata: st.metadata };
}
