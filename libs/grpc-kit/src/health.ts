import { status as grpcStatus, type ClientReadableStream, type ServerWritableStream, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { healthv1 } from '@agent/proto';
import { connect } from './client';

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

  /**
   * Holds another server's entry under the same name here, as it changes
   * (grpc.health.v1 Watch): NOT_SERVING until it answers and while it cannot be
   * reached. Followed until close().
   */
  follow(address: string, service: string): void {
    const peer = connect(healthv1.HealthClient, address);
    let stream: ClientReadableStream<healthv1.HealthCheckResponse> | undefined;
    const watch = (delayMs: number): void => {
      if (this.closed) return;
      stream = peer.client.watch({ service });
      stream.on('data', (r: healthv1.HealthCheckResponse) => {
        delayMs = 250;
        this.set(service, r.status === SERVING);
      });
      let again = false;
      const retry = (): void => {
        if (again || this.closed) return;
        again = true;
        this.set(service, false);
        setTimeout(() => watch(Math.min(delayMs * 2, 5_000)), delayMs).unref();
      };
      stream.on('error', retry);
      stream.on('end', retry);
    };
    this.set(service, false);
    watch(250);
    this.closers.push(() => {
      stream?.cancel();
      peer.close();
    });
  }

  private closed = false;
  private readonly closers: Array<() => void> = [];

  /** Ends every Watch stream, and every entry followed (at shutdown). */
  close(): void {
    this.closed = true;
    for (const c of this.closers.splice(0)) c();
    for (const set of this.watchers.values()) for (const w of set) w.end();
    this.watchers.clear();
  }
}
