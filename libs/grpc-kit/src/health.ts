import { status as grpcStatus, type ServerWritableStream, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { healthv1 } from '@agent/proto';

type Serving = healthv1.HealthCheckResponse_ServingStatus;
const { SERVING, NOT_SERVING, SERVICE_UNKNOWN } = healthv1.HealthCheckResponse_ServingStatus;

/**
 * grpc.health.v1 for one server. "" is the server as a whole; each served
 * service has its own entry. Watchers are told of every change.
 */
export class HealthRegistry {
  private readonly statuses = new Map<string, Serving>();
  private readonly watchers = new Map<string, Set<ServerWritableStream<healthv1.HealthCheckRequest, healthv1.HealthCheckResponse>>>();

  constructor(services: readonly string[]) {
    this.statuses.set('', NOT_SERVING);
    for (const s of services) this.statuses.set(s, NOT_SERVING);
  }

  /** Sets every known service (and the server) at once. */
  setAll(serving: boolean): void {
    for (const name of this.statuses.keys()) this.set(name, serving);
  }

  set(service: string, serving: boolean): void {
    const status = serving ? SERVING : NOT_SERVING;
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const w of this.watchers.get(service) ?? []) w.write({ status });
  }

  get(service: string): Serving | undefined {
    return this.statuses.get(service);
  }

  readonly implementation: healthv1.HealthServer = {
    check: (call: ServerUnaryCall<healthv1.HealthCheckRequest, healthv1.HealthCheckResponse>, cb: sendUnaryData<healthv1.HealthCheckResponse>) => {
      const status = this.statuses.get(call.request.service);
      if (status === undefined) {
        cb({ code: grpcStatus.NOT_FOUND, details: `unknown service ${JSON.stringify(call.request.service)}` });
        return;
      }
      cb(null, { status });
    },
    list: (_call, cb) => {
      const statuses: Record<string, healthv1.HealthCheckResponse> = {};
      for (const [k, v] of this.statuses) statuses[k] = { status: v };
      cb(null, { statuses });
    },
    watch: (call) => {
      const service = call.request.service;
      call.write({ status: this.statuses.get(service) ?? SERVICE_UNKNOWN });
      let set = this.watchers.get(service);
      if (!set) this.watchers.set(service, (set = new Set()));
      set.add(call);
      const drop = (): void => {
        set.delete(call);
      };
      call.on('cancelled', drop);
      call.on('close', drop);
    },
  };

  /** Ends every Watch stream (at shutdown). */
  close(): void {
    for (const set of this.watchers.values()) for (const w of set) w.end();
    this.watchers.clear();
  }
}
