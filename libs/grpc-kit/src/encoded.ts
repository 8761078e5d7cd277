// An answer kept in its wire form: a handler that has the bytes of its
// response already (an object encoded once per change, read many times)
// returns them wrapped, and they are sent as they are, with no encoding per
// call. Every way a handler is reached takes it: the gRPC server, the pipe,
// and a peer in the same process (which decodes it: its caller wants a
// message).
import type { ServiceDefinition } from '@grpc/grpc-js';
import { tolerantDefinition } from './undecodable';

/** The encoded bytes of a response message of type T. */
export class Encoded<T> {
  declare private readonly message?: T;
  constructor(readonly bytes: Buffer) {}
}

/** What a unary handler may answer: the message, or its bytes. */
export type Answer<T> = T | Encoded<T>;

/**
 * The definition as the agent serves it: requests decoded tolerantly
 * (undecodable.ts), and responses already Encoded sent as they are.
 */
export function servedDefinition(def: ServiceDefinition): ServiceDefinition {
  const tolerant = tolerantDefinition(def);
  const out: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(tolerant)) {
    out[key] = { ...method, responseSerialize: (res: unknown): Buffer => (res instanceof Encoded ? res.bytes : method.responseSerialize(res)) };
  }
  return out as ServiceDefinition;
}
