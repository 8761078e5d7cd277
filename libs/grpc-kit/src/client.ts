import {
  credentials,
  type CallOptions,
  type ChannelCredentials,
  type Client,
  type ClientUnaryCall,
  type handleUnaryCall,
  type Metadata,
  type ServiceDefinition,
  type ServiceError,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { Metadata as GrpcMetadata, status } from '@grpc/grpc-js';
import { SpanKind, type Span } from '@opentelemetry/api';
import { tracing } from '@agent/telemetry';
import { Encoded } from './encoded';
import { fromGrpcError, serviceError } from './status';
import { endSpan, injectContext, NO_SPAN, rpcAttributes, tracer } from './tracing';

export type UnaryFn<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** The keys of a ts-proto client whose last overload is a unary call. */
type UnaryKeys<C> = {
  [K in keyof C]: C[K] extends UnaryFn<infer _Req, infer _Res> ? K : never;
}[keyof C];
type ReqOf<F> = F extends UnaryFn<infer Req, infer _Res> ? Req : never;
type ResOf<F> = F extends UnaryFn<infer _Req, infer Res> ? Res : never;

const DEFAULT_TIMEOUT_MS = 60_000;

export interface CallOpts {
  /** Milliseconds from now. Default: 60 s. */
  readonly timeoutMs?: number;
  readonly metadata?: Metadata;
}

/**
 * A promise-based view of a ts-proto grpc-js client. Errors come back as
 * domain errors (fromGrpcError), so a NOT_FOUND two hops down is still
 * NOT_FOUND at the edge.
 */
export class Peer<C extends Client> {
  constructor(
    readonly client: C,
    readonly address: string,
    /** Sent as "authorization: Bearer <token>" on every call. */
    private readonly token?: string,
  ) {}

  /** Every call's metadata: a restarting peer is waited for; the token goes along. */
  protected metadata(md?: Metadata): Metadata {
    const out = waitingMetadata(md);
    if (this.token !== undefined) out.set('authorization', `Bearer ${this.token}`);
    return out;
  }

  call<K extends UnaryKeys<C>>(method: K, request: ReqOf<C[K]>, opts: CallOpts = {}): Promise<ResOf<C[K]>> {
    const fn = this.client[method] as unknown as UnaryFn<ReqOf<C[K]>, ResOf<C[K]>> & { path: string };
    const options: Partial<CallOptions> = { deadline: Date.now() + (opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) };
    const send = (metadata: Metadata, span: Span): Promise<ResOf<C[K]>> =>
      new Promise<ResOf<C[K]>>((resolve, reject) => {
        this.invoke(String(method), fn, request, metadata, options, (err, res) => {
          endSpan(span, err ? err.code : 0, err?.details);
          if (err) reject(fromGrpcError(err));
          else resolve(res);
        });
      });
    // Nothing traced: no span, no context to carry.
    if (!tracing()) return send(this.metadata(opts.metadata), NO_SPAN);
    return tracer.startActiveSpan(fn.path.slice(1), { kind: SpanKind.CLIENT, attributes: { ...rpcAttributes(fn.path), 'server.address': this.address } }, (span) =>
      send(injectContext(this.metadata(opts.metadata)), span),
    );
  }

  /** The transport: a real gRPC call. */
  protected invoke<Req, Res>(
    _method: string,
    fn: UnaryFn<Req, Res>,
    request: Req,
    metadata: Metadata,
    options: Partial<CallOptions>,
    callback: (error: ServiceError | null, response: Res) => void,
  ): void {
    fn.call(this.client, request, metadata, options, callback);
  }

  /** Metadata that carries the active trace context and the token, for server-streaming calls. */
  traceMetadata(): Metadata {
    return injectContext(this.metadata());
  }

  /** Resolves once the channel is connected, or rejects after timeoutMs. */
  waitReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) =>
      this.client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())),
    );
  }

  close(): void {
    this.client.close();
  }
}

/**
 * A peer served by this very process (the daemon's layout): unary calls skip
 * HTTP/2 and sockets and go straight to the service's handler, through the
 * same server wrapper (status mapping, server span). Messages are not encoded
 * and decoded: each side gets its own copy of the other's (copyMessage, about
 * a fifth of the cost), so neither can change what the other holds. Streams
 * still use the real channel.
 */
export class LocalPeer<C extends Client> extends Peer<C> {
  constructor(
    client: C,
    address: string,
    private readonly definition: ServiceDefinition,
    private readonly implementation: UntypedServiceImplementation,
    token: string,
  ) {
    super(client, address, token);
  }

  protected override invoke<Req, Res>(
    method: string,
    _fn: UnaryFn<Req, Res>,
    request: Req,
    metadata: Metadata,
    _options: Partial<CallOptions>,
    callback: (error: ServiceError | null, response: Res) => void,
  ): void {
    const def = this.definition[method];
    const handler = this.implementation[method] as handleUnaryCall<unknown, unknown> | undefined;
    if (!def || !handler) throw new Error(`no local method ${method}`);
    const call = directCall(copyMessage(request), metadata, def.path, 'local', Infinity);
    handler(call as unknown as Parameters<handleUnaryCall<unknown, unknown>>[0], (err, res) => {
      if (err) return callback(serviceError(err.code ?? status.UNKNOWN, err.details ?? '', err.metadata), undefined as Res);
      callback(null, (res instanceof Encoded ? def.responseDeserialize(res.bytes) : copyMessage(res)) as Res);
    });
  }
}

/** What a handler sees of a call made to it directly (LocalPeer, the pipe): what a grpc-js unary call gives it. */
export interface DirectCall {
  readonly request: unknown;
  readonly metadata: Metadata;
  /** Set when the caller went away. */
  cancelled: boolean;
}

/** A call for a unary handler, made without grpc-js's server (the caller is set on it by whoever authenticated it). */
export function directCall(request: unknown, metadata: Metadata, path: string, peer: string, deadline: number): DirectCall {
  const call = {
    request,
    metadata,
    cancelled: false,
    getPath: () => path,
    getPeer: () => peer,
    getDeadline: () => deadline,
    sendMetadata: () => undefined,
    on: () => call,
  };
  return call;
}

/**
 * A deep copy of a message as ts-proto makes them: plain objects (maps
 * included), arrays, Dates, and bytes (a Buffer stays a Buffer). Nothing of
 * the copy is shared with the original.
 */
export function copyMessage<T>(v: T): T {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) {
    const out: unknown[] = new Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = copyMessage(v[i]);
    return out as T;
  }
  if (v instanceof Date) return new Date(v.getTime()) as T;
  if (Buffer.isBuffer(v)) return Buffer.from(v) as T;
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength)) as T;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = copyMessage((v as Record<string, unknown>)[k]);
  return out as T;
}

/** A peer that is (re)starting is waited for, up to the call's deadline, instead of failing at once. */
function waitingMetadata(md?: Metadata): Metadata {
  const out = md ?? new GrpcMetadata();
  out.setOptions({ ...out.getOptions(), waitForReady: true });
  return out;
}

export type ClientCtor<C> = new (address: string, creds: ChannelCredentials, options?: object) => C;

/** In-process peer; its streams go over the real socket, so they carry the token too. */
export function connectLocal<C extends Client>(Ctor: ClientCtor<C>, address: string, definition: ServiceDefinition, implementation: UntypedServiceImplementation, token: string): LocalPeer<C> {
  return new LocalPeer(makeClient(Ctor, address), address, definition, implementation, token);
}

export function makeClient<C extends Client>(Ctor: ClientCtor<C>, address: string, tls?: ChannelCredentials): C {
  return new Ctor(address, tls ?? credentials.createInsecure(), {
    'grpc.keepalive_time_ms': 30_000,
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    // A peer or upstream that was down is found again within seconds (grpc-js would back off to 120 s).
    'grpc.initial_reconnect_backoff_ms': 250,
    'grpc.max_reconnect_backoff_ms': 5_000,
  });
}

export interface ConnectOpts {
  /** Bearer token for every call. */
  readonly token?: string;
  /** TLS (and client certificate) credentials; default plaintext. */
  readonly tls?: ChannelCredentials;
}

export function connect<C extends Client>(Ctor: ClientCtor<C>, address: string, opts: ConnectOpts = {}): Peer<C> {
  return new Peer(makeClient(Ctor, address, opts.tls), address, opts.token);
}
