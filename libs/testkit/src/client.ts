import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { connect, type Peer } from '@agent/grpc-kit';
import { v1 } from '@agent/proto';

export type Api = Peer<v1.AgentServiceClient>;

/** A grpc-js client of the public API, with a bearer token (an agent's admin token, usually). */
export function apiClient(address: string, token?: string): Api {
  return connect(v1.AgentServiceClient, address, { token });
}

export interface Outcome {
  readonly code: status;
  readonly details: string;
}

const REQUEST_TYPES: Partial<Record<keyof v1.AgentServiceClient, { fromPartial(o: object): unknown }>> = {
  create: v1.CreateRequest,
  update: v1.UpdateRequest,
  delete: v1.DeleteRequest,
  pushOn: v1.PushOnRequest,
  pushOff: v1.PushOffRequest,
  pushOnce: v1.PushOnceRequest,
  get: v1.GetRequest,
  list: v1.ListRequest,
  getEvent: v1.GetEventRequest,
};

/** Calls a unary method and returns its raw gRPC status (OK or not). Unset fields take their proto defaults. */
export function rawCall(client: v1.AgentServiceClient, method: keyof v1.AgentServiceClient, partial: object, token?: string): Promise<Outcome> {
  const type = REQUEST_TYPES[method];
  if (!type) throw new Error(`no request type for ${String(method)}`);
  const req = type.fromPartial(partial);
  return new Promise((resolve) => {
    const fn = client[method] as unknown as (r: unknown, md: Metadata, o: object, cb: (e: ServiceError | null) => void) => void;
    const md = new Metadata();
    if (token) md.set('authorization', `Bearer ${token}`);
    fn.call(client, req, md, { deadline: Date.now() + 30_000 }, (err) => resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: '' }));
  });
}
