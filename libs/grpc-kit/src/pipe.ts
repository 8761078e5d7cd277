// Unary calls between the agent's own services (five processes) carried on
// one long-lived stream per peer: agent.internal.v1.Pipe. In grpc-js a unary
// call is an HTTP/2 stream of its own, with headers, trailers, a deadline
// timer and four layers of call objects on the client; between two processes
// that wake up for each call it costs about 550 µs of CPU (caller and service),
// a message each way on an open stream about 200 µs (bench: internal_call).
// The server end runs the very handlers a unary call would, behind the same
// access tables; the client end is a Peer like any other, so callers do not
// know which one they hold.
import {
  Metadata,
  status,
  type CallOptions,
  type ClientDuplexStream,
  type Client,
  type MethodDefinition,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServiceDefinition,
  type ServiceError,
  type StatusObject,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { GrpcService } from '@agent/option';
import { internalv1 } from '@agent/proto';
import { authorize, INTERNAL_ONLY, peerCertificate, refusal, setCaller, type Access, type Authenticate, type Caller } from './auth';
import { countCall } from './call-metrics';
import { directCall, makeClient, Peer, type ClientCtor, type DirectCall, type UnaryFn } from './client';
import type { Logger } from './log';
import { serviceError, toGrpcStatus } from './status';
import { Undecodable, undecodableError } from './undecodable';
import { servedDefinition } from './encoded';

export const PIPE_PATH = `/${GrpcService.Pipe}/Exchange`;

/** Requests larger than this go as unary calls of their own. */
export const PIPE_MAX_REQUEST = 1024 * 1024;

/** The services a listener offers on its pipe: those only the agent's own services may call. */
export function piped<S extends { readonly access: Access }>(services: readonly S[]): S[] {
  return services.filter((s) => s.access === INTERNAL_ONLY);
}

interface Route {
  readonly name: string;
  readonly access: Access;
  readonly method: MethodDefinition<unknown, unknown>;
  readonly handler: (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => void;
}

/**
 * The server end, one per listener: serves the unary methods of the given
 * services to callers with the internal role. shutdown() after the server
 * stopped taking streams: each stream ends once its running calls are
 * answered; a call that comes meanwhile is answered not_run, and its caller
 * sends it again to the service once it is back.
 */
export class PipeServer {
  private readonly routes = new Map<string, Route>();
  private readonly streams = new Set<{ drain(): void }>();
  private draining = false;

  constructor(
    private readonly log: Logger,
    services: ReadonlyArray<{ readonly definition: ServiceDefinition; readonly implementation: UntypedServiceImplementation; readonly access: Access }>,
    private readonly authenticate: Authenticate,
    private readonly tls: boolean,
  ) {
    for (const s of services) {
      const definition = servedDefinition(s.definition);
      for (const [key, handler] of Object.entries(s.implementation)) {
        const method = definition[key];
        if (!method || method.requestStream || method.responseStream) continue;
        this.routes.set(method.path, { name: method.path.slice(method.path.lastIndexOf('/') + 1), access: s.access, method, handler: handler as Route['handler'] });
      }
    }
  }

  readonly implementation: UntypedServiceImplementation = {
    exchange: (stream: ServerDuplexStream<internalv1.PipeCall, internalv1.PipeReply>) => this.serve(stream),
  };

  drain(): void {
    this.draining = true;
    for (const s of this.streams) s.drain();
  }

  private serve(stream: ServerDuplexStream<internalv1.PipeCall, internalv1.PipeReply>): void {
    let caller: Caller | undefined;
    try {
      caller = this.authenticate(stream.metadata, peerCertificate(stream, this.tls));
      authorize(INTERNAL_ONLY, 'Exchange', caller);
    } catch (err) {
      this.log.warn('call refused', { method: PIPE_PATH, peer: stream.getPeer(), ...refusal(caller, err) });
      const st = toGrpcStatus(err);
      countCall('bidi_stream', PIPE_PATH, st.code);
      stream.emit('error', { code: st.code, details: st.details, metadata: st.metadata });
      return;
    }
    const authorized = caller;
    const running = new Set<DirectCall>();
    let ended = false;
    let draining = this.draining;
    const entry = {
      drain: (): void => {
        draining = true;
        if (running.size === 0) end();
      },
    };
    const end = (): void => {
      if (ended) return;
      ended = true;
      this.streams.delete(entry);
      countCall('bidi_stream', PIPE_PATH, status.OK);
      if (!stream.cancelled) stream.end();
    };
    const reply = (r: internalv1.PipeReply): void => {
      if (!ended && !stream.cancelled) stream.write(r);
    };
    this.streams.add(entry);
    stream.on('data', (m: internalv1.PipeCall) => {
      if (ended) return;
      if (draining) return reply(notRun(m.id));
      this.run(m, authorized, stream.getPeer(), running, (r) => {
        reply(r);
        if (draining && running.size === 0) end();
      });
    });
    // The caller is done sending: the stream ends once what it sent is answered.
    stream.on('end', () => entry.drain());
    stream.on('cancelled', () => {
      for (const c of running) c.cancelled = true;
      if (!ended) countCall('bidi_stream', PIPE_PATH, status.CANCELLED);
      ended = true;
      this.streams.delete(entry);
    });
    stream.on('error', () => undefined); // a write after the caller went: the 'cancelled' above says it
    if (draining) entry.drain();
  }

  /** One call: authorized as a unary call of its method would be, then its handler. */
  private run(m: internalv1.PipeCall, caller: Caller, peer: string, running: Set<DirectCall>, reply: (r: internalv1.PipeReply) => void): void {
    const route = this.routes.get(m.method);
    if (!route) return reply(failed(m.id, status.UNIMPLEMENTED, `${m.method} is not served on this pipe`));
    try {
      authorize(route.access, route.name, caller);
    } catch (err) {
      this.log.warn('call refused', { method: m.method, peer, ...refusal(caller, err) });
      const st = toGrpcStatus(err);
      countCall('unary', m.method, st.code);
      return reply(statusReply(m.id, st));
    }
    const request = route.method.requestDeserialize(Buffer.from(m.request.buffer, m.request.byteOffset, m.request.byteLength));
    if (request instanceof Undecodable) return reply(statusReply(m.id, toGrpcStatus(undecodableError(request))));
    const call = directCall(request, metadataOf(m.metadata), m.method, peer, m.timeoutMs > 0 ? Date.now() + m.timeoutMs : Infinity);
    setCaller(call, caller);
    running.add(call);
    const answer = (err: Partial<StatusObject> | null, res?: unknown): void => {
      if (!running.delete(call)) return; // answered already
      if (err) return reply(statusReply(m.id, err));
      let response: Buffer;
      try {
        response = route.method.responseSerialize(res);
      } catch {
        return reply(failed(m.id, status.INTERNAL, 'Error serializing response'));
      }
      reply({ id: m.id, code: status.OK, details: '', response, trailers: {}, notRun: false });
    };
    try {
      route.handler(call as unknown as ServerUnaryCall<unknown, unknown>, answer);
    } catch (err) {
      this.log.error('unexpected error', { method: m.method, err });
      answer({ code: status.INTERNAL, details: 'internal error' });
    }
  }
}

function failed(id: number, code: status, details: string): internalv1.PipeReply {
  return { id, code, details, response: Buffer.alloc(0), trailers: {}, notRun: false };
}

function notRun(id: number): internalv1.PipeReply {
  return { ...failed(id, status.UNAVAILABLE, 'the service is shutting down'), notRun: true };
}

function statusReply(id: number, st: Partial<StatusObject>): internalv1.PipeReply {
  return { ...failed(id, st.code ?? status.UNKNOWN, st.details ?? ''), trailers: st.metadata ? textEntries(st.metadata) : {} };
}

/** A metadata's text entries (a -bin entry is not carried), but the credentials. */
function textEntries(md: Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) if (typeof v === 'string' && k !== 'authorization') out[k] = v;
  return out;
}

/** Text entries as metadata (a reply's trailers). */
function metadataOf(entries: Record<string, string>): Metadata {
  const md = new Metadata();
  for (const [k, v] of Object.entries(entries)) md.set(k, v);
  return md;
}

/** A call waiting for its reply. */
interface Waiting {
  id: number;
  stream: ClientDuplexStream<internalv1.PipeCall, internalv1.PipeReply> | undefined;
  timer: NodeJS.Timeout | undefined;
  readonly method: MethodDefinition<unknown, unknown>;
  readonly request: Buffer;
  readonly metadata: Record<string, string>;
  readonly deadline: number;
  readonly callback: (error: ServiceError | null, response: unknown) => void;
  /** The same call as a unary call: for a peer that has no pipe. */
  readonly unary: () => void;
}

/**
 * The client end: a peer whose unary calls go on one stream to the service
 * (opened when first needed, and again after it ends), each with its own
 * deadline. A call the service did not run because it was shutting down, or
 * that was still on a stream the service ended, is sent again on a new
 * stream, which waits for the service to be back (as a unary call waits for
 * a restarting peer). A call on a stream that broke is failed with the
 * stream's status, as a unary call on a broken connection is. A service
 * without a pipe gets unary calls.
 */
export class PipePeer<C extends Client> extends Peer<C> {
  private stream: ClientDuplexStream<internalv1.PipeCall, internalv1.PipeReply> | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private lastId = 0;
  private unsupported = false;

  constructor(
    client: C,
    address: string,
    private readonly definition: ServiceDefinition,
    token: string,
  ) {
    super(client, address, token);
  }

  protected override invoke<Req, Res>(
    method: string,
    fn: UnaryFn<Req, Res>,
    request: Req,
    metadata: Metadata,
    options: Partial<CallOptions>,
    callback: (error: ServiceError | null, response: Res) => void,
  ): void {
    const unary = (): void => super.invoke(method, fn, request, metadata, options, callback);
    if (this.unsupported) return unary();
    const def = this.definition[method] as MethodDefinition<unknown, unknown> | undefined;
    if (!def) throw new Error(`no method ${method}`);
    const bytes = def.requestSerialize(request);
    // A large request goes on its own: it would hold the stream for the calls behind it, and one past the server's limit would end the stream for all of them.
    if (bytes.length > PIPE_MAX_REQUEST) return unary();
    const deadline = typeof options.deadline === 'number' ? options.deadline : Infinity;
    this.send({ id: 0, stream: undefined, timer: undefined, method: def, request: bytes, metadata: textEntries(metadata), deadline, callback: callback as Waiting['callback'], unary });
  }

  override close(): void {
    this.stream?.cancel();
    super.close();
  }

  private send(w: Waiting): void {
    const left = w.deadline - Date.now();
    if (left <= 0) return w.callback(serviceError(status.DEADLINE_EXCEEDED, 'Deadline exceeded'), undefined);
    if (w.timer === undefined && left !== Infinity) {
      w.timer = setTimeout(() => {
        this.waiting.delete(w.id);
        w.callback(serviceError(status.DEADLINE_EXCEEDED, 'Deadline exceeded'), undefined);
      }, left);
      w.timer.unref();
    }
    w.id = ++this.lastId;
    w.stream = this.open();
    this.waiting.set(w.id, w);
    w.stream.write({ id: w.id, method: w.method.path, request: w.request, metadata: w.metadata, timeoutMs: left === Infinity ? 0 : Math.min(Math.ceil(left), 0xffffffff) });
  }

  private open(): ClientDuplexStream<internalv1.PipeCall, internalv1.PipeReply> {
    if (this.stream) return this.stream;
    const s = this.client.makeBidiStreamRequest(
      PIPE_PATH,
      (m: internalv1.PipeCall) => Buffer.from(internalv1.PipeCall.encode(m).finish()),
      (b: Buffer) => internalv1.PipeReply.decode(b),
      this.metadata(),
      {},
    );
    s.on('data', (r: internalv1.PipeReply) => this.settle(s, r));
    s.on('error', () => undefined); // its status (below) says it all
    s.on('status', (st: StatusObject) => this.closed(s, st));
    this.stream = s;
    return s;
  }

  private settle(s: ClientDuplexStream<internalv1.PipeCall, internalv1.PipeReply>, r: internalv1.PipeReply): void {
    const w = this.waiting.get(r.id);
    if (!w || w.stream !== s) return; // timed out meanwhile
    this.waiting.delete(r.id);
    if (r.notRun) {
      // The service is going: this stream is done; the call goes on the next one.
      if (this.stream === s) {
        this.stream = undefined;
        s.end();
      }
      return this.send(w);
    }
    clearTimeout(w.timer);
    if (r.code !== status.OK) return w.callback(serviceError(r.code, r.details, metadataOf(r.trailers)), undefined);
    let response: unknown;
    try {
      response = w.method.responseDeserialize(Buffer.from(r.response.buffer, r.response.byteOffset, r.response.byteLength));
    } catch (err) {
      return w.callback(serviceError(status.INTERNAL, `response not decoded: ${(err as Error).message}`), undefined);
    }
    w.callback(null, response);
  }

  private closed(s: ClientDuplexStream<internalv1.PipeCall, internalv1.PipeReply>, st: StatusObject): void {
    if (this.stream === s) this.stream = undefined;
    const left = [...this.waiting.values()].filter((w) => w.stream === s);
    // A service with no pipe said so before it answered anything on it.
    if (st.code === status.UNIMPLEMENTED) this.unsupported = true;
    for (const w of left) {
      this.waiting.delete(w.id);
      if (st.code === status.OK) {
        // The service ended the stream with nothing of ours running: these never ran.
        this.send(w);
        continue;
      }
      clearTimeout(w.timer);
      if (this.unsupported) w.unary();
      else w.callback(serviceError(st.code, st.details, st.metadata), undefined);
    }
  }
}

type ServiceClientCtor<C> = ClientCtor<C> & { readonly service: ServiceDefinition };

/** A peer that is another of the agent's services: its unary calls go on the pipe. */
export function connectInternal<C extends Client>(Ctor: ServiceClientCtor<C>, address: string, token: string): PipePeer<C> {
  return new PipePeer(makeClient(Ctor, address), address, Ctor.service, token);
}
