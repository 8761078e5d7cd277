import * as fs from 'node:fs';
import type { Server, ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { ReflectionService } from '@grpc/reflection';
import { descriptorSetPath } from '@agent/proto';

// Server reflection (v1 and v1alpha), so grpcurl and buf curl work without
// protos. A ReflectionService decodes the whole descriptor set, comments and
// all, and keeps it: ~2 MB of live heap that every major GC marks. The daemon
// runs six servers, so the process keeps one index and each server lists
// only its own services from it.

/**
 * The descriptor set exactly as buf built it, one FileDescriptorProto per
 * file. (proto-loader's loader regroups files by package, and clients then
 * cannot resolve a package spread over several files.)
 */
function packageDefinition(): PackageDefinition {
  const reader = new BinaryReader(fs.readFileSync(descriptorSetPath));
  const files: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) files.push(reader.bytes());
    else reader.skip(wireType);
  }
  return { 'buf.descriptor_set': { fileDescriptorProtos: files } } as unknown as PackageDefinition;
}

let shared: ReflectionService | undefined;

interface Answer {
  listServicesResponse?: { service: { name: string }[] };
}

/** Adds reflection to `server`; its list of services is `services` (what this server serves). */
export function addReflection(server: Server, services: readonly string[]): void {
  shared ??= new ReflectionService(packageDefinition());
  const listed = new Set(services);
  const onlyListed = (answer: Answer): Answer =>
    answer.listServicesResponse ? { ...answer, listServicesResponse: { service: answer.listServicesResponse.service.filter((s) => listed.has(s.name)) } } : answer;
  // The shared index answers; this server's list is filtered on the way out.
  const filtering = {
    addService(definition: Parameters<Server['addService']>[0], impl: UntypedServiceImplementation): void {
      const info = impl.ServerReflectionInfo as (stream: ServerDuplexStream<unknown, Answer>) => void;
      server.addService(definition, {
        ServerReflectionInfo: (stream: ServerDuplexStream<unknown, Answer>) => {
          const write = stream.write.bind(stream) as (answer: Answer) => boolean;
          stream.write = ((answer: Answer) => write(onlyListed(answer))) as typeof stream.write;
          info(stream);
        },
      });
    },
  };
  shared.addToServer(filtering as unknown as Server);
}
