// A request the generated decoder refuses (an int64 beyond what a JS number
// holds exactly) would leave grpc-js as INTERNAL "Error deserializing
// request". Instead the decode failure is kept as the request, and the guard
// answers INVALID_ARGUMENT naming the field, found by decoding the bytes again
// with the descriptor set (int64 as bigint).
import * as fs from 'node:fs';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { createFileRegistry, fromBinary, ScalarType, type DescMessage, type FileRegistry, type Message } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { descriptorSetPath } from '@agent/proto';
import { InvalidArgumentError } from './errors';

/** What a method receives when its request could not be decoded. */
export class Undecodable {
  constructor(
    readonly path: string,
    readonly bytes: Buffer,
    readonly cause: unknown,
  ) {}
}

/** The definition with every request decoder made tolerant: a failure becomes an Undecodable request. */
export function tolerantDefinition(def: ServiceDefinition): ServiceDefinition {
  const out: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(def)) {
    out[key] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return new Undecodable(method.path, bytes, err);
        }
      },
    };
  }
  return out as ServiceDefinition;
}

/** The status for an undecodable request: which field holds what, as a user would write it. */
export function undecodableError(u: Undecodable): InvalidArgumentError {
  const reason = u.cause instanceof Error ? u.cause.message : String(u.cause);
  try {
    const input = inputOf(u.path);
    const found = input ? unsafeIntegers(input, fromBinary(input, u.bytes), '') : [];
    const first = found[0];
    if (first) return new InvalidArgumentError(first.field, `${first.value} is beyond ±${Number.MAX_SAFE_INTEGER} (2^53-1), the largest integer this API takes exactly`);
  } catch {
    /* not even valid protobuf: said below */
  }
  return new InvalidArgumentError('request', `cannot be decoded: ${reason}`);
}

let registry: FileRegistry | undefined;
function inputOf(path: string): DescMessage | undefined {
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, fs.readFileSync(descriptorSetPath)));
  const [, service = '', method = ''] = path.split('/');
  return registry.getService(service)?.methods.find((m) => m.name === method)?.input;
}

const INT64 = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);
const MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** Every 64-bit integer in the message that a JS number cannot hold exactly, with its field path (proto names). */
function unsafeIntegers(desc: DescMessage, msg: Message, prefix: string): Array<{ field: string; value: bigint }> {
  const out: Array<{ field: string; value: bigint }> = [];
  const bag = msg as unknown as Record<string, unknown>;
  for (const f of desc.fields) {
    let value: unknown;
    if (f.oneof) {
      const o = bag[f.oneof.localName] as { case?: string; value?: unknown } | undefined;
      value = o?.case === f.localName ? o.value : undefined;
    } else {
      value = bag[f.localName];
    }
    if (value === undefined) continue;
    const name = prefix + f.name;
    const check = (v: unknown, at: string): void => {
      if (typeof v === 'bigint' && (v > MAX || v < -MAX)) out.push({ field: at, value: v });
    };
    if (f.fieldKind === 'scalar' && INT64.has(f.scalar)) check(value, name);
    else if (f.fieldKind === 'message') out.push(...unsafeIntegers(f.message, value as Message, `${name}.`));
    else if (f.fieldKind === 'list') {
      (value as unknown[]).forEach((v, i) => {
        if (f.listKind === 'message') out.push(...unsafeIntegers(f.message, v as Message, `${name}[${i}].`));
        else if (f.listKind === 'scalar' && INT64.has(f.scalar)) check(v, `${name}[${i}]`);
      });
    } else if (f.fieldKind === 'map') {
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (f.mapKind === 'message') out.push(...unsafeIntegers(f.message, v as Message, `${name}[${k}].`));
        else if (f.mapKind === 'scalar' && INT64.has(f.scalar)) check(v, `${name}[${k}]`);
      }
    }
  }
  return out;
}
