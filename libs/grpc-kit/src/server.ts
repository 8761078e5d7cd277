import * as fs from 'node:fs';
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
import type { PackageDefinition } from '@grpc/proto-loader';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { ReflectionService } from '@grpc/reflection';
import { descriptorSetPath, healthv1 } from '@agent/proto';
import { HealthRegistry } from './health';
import type { Logger } from './log';
import { connectLocal, type LocalPeer } from './client';
import { toGrpcStatus } from './status';
import { endSpan, serverSpan, TRACE_ID_HEADER, validTraceId } from './tracing';
import { Metadata } from '@grpc/grpc-js';

export interface ServiceBinding {
  /** Fully qualified name, e.g. agent.v1.AgentService. */
  readonly name: string;
  readonly definition: ServiceDefinition;
  readonly implementation: UntypedServiceImplementation;
}

export interface RunningServer {
  readonly server: Server;
  /** The bound address (the real port when asked for :0). */
  readonly address: string;
  readonly port: number;
  readonly health: HealthRegistry;
  /** Stops taking calls, lets running ones finish for graceMs, then cancels them. */
  shutdown(graceMs?: number): Promise<void>;
  /** A peer for this server's (first) service from inside the same process: unary calls skip the network. */
  localPeer<C extends Client>(Ctor: new (address: string, creds: ChannelCredentials, options?: object) => C): LocalPeer<C>;
}

let packageDefinitionCache: PackageDefinition | undefined;
/**
 * The descriptor set exactly as buf built it, one FileDescriptorProto per
 * file. (proto-loader's loader regroups files by package, and clients then
 * cannot resolve a package spread over several files.)
 */
function packageDefinition(): PackageDefinition {
  if (packageDefinitionCache) return packageDefinitionCache;
  const reader = new BinaryReader(fs.readFileSync(descriptorSetPath));
  const files: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) files.push(reader.bytes());
    else reader.skip(wireType);
  }
  packageDefinitionCache = { 'buf.descriptor_set': { fileDescriptorProtos: files } } as unknown as PackageDefinition;
  return packageDefinitionCache;
}

/**
 * A gRPC server with the given services plus grpc.health.v1 and server
 * reflection (v1 and v1alpha), so grpcurl and buf curl work without protos.
 * Health starts NOT_SERVING; the caller flips it when it is ready.
 */
export async function startGrpcServer(opts: {
  address: string;
  services: readonly ServiceBinding[];
  log: Logger;
}): Promise<RunningServer> {
  const server = new Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  const names = opts.services.map((s) => s.name);
  const health = new HealthRegistry(names);
  for (const s of opts.services) server.addService(s.definition, s.implementation);
  server.addService(healthv1.HealthService, health.implementation);
  new ReflectionService(packageDefinition(), { services: [...names, 'grpc.health.v1.Health'] }).addToServer(server);

  const [host, credentialsAddress] = splitAddress(opts.address);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(credentialsAddress, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  const address = host === 'unix' ? opts.address : `${host}:${port}`;
  opts.log.info('grpc server listening', { address, services: names });

  const first = opts.services[0];
  return {
    server,
    address,
    port,
    health,
    localPeer: (Ctor) => {
      if (!first) throw new Error('no service to call');
      return connectLocal(Ctor, address, first.definition, first.implementation);
    },
    shutdown: (graceMs = 5_000) =>
      new Promise<void>((resolve) => {
        health.setAll(false);
        health.close();
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

function splitAddress(address: string): [string, string] {
  if (address.startsWith('unix:')) return ['unix', address];
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), address];
}

/**
 * Adapts an async handler to grpc-js. Every thrown error goes through the
 * one status table; unexpected ones are logged with their stack and leave as
 * INTERNAL with a generic message.
 */
export function unary<Req, Res>(log: Logger, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    serverSpan(log.module, call.getPath(), call.metadata, (span) => {
      sendTraceId(call, validTraceId(span));
      fn(call.request, call).then(
        (res) => {
          endSpan(span, 0);
          callback(null, res);
        },
        (err: unknown) => {
          const st = mapError(log, call.getPath(), err);
          endSpan(span, st.code, st.details);
          callback(st);
        },
      );
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
          call.end();
        },
        (err: unknown) => {
          const st = mapError(log, call.getPath(), err);
          endSpan(span, call.cancelled ? 1 : st.code, st.details);
          if (!call.cancelled) call.emit('error', st);
        },
      );
    });
  };
}

function mapError(log: Logger, method: string, err: unknown) {
  const st = toGrpcStatus(err);
  if (st.unexpected) log.error('unexpected error', { method, err });
  else log.debug('call failed', { method, code: st.code, details: st.details });
  return { code: st.code, details: st.details, metadata: st.metadata };
}
