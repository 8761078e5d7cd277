// The machine's floor for a call: a bare grpc-js server with the agent's own
// service definition and messages, doing only the work itself (an Update
// writes a memory limit file, a Get answers a stored object): no
// authentication, no tracing, no hops between services. The bench calls it
// with the same client as the agent, in the same run.
import * as fs from 'node:fs';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { v1 } from '@agent/proto';

export interface Floor {
  readonly address: string;
  stop(): Promise<void>;
}

export async function startFloor(opts: { readonly object: v1.Object; readonly memoryLimitFile: string }): Promise<Floor> {
  const server = new Server();
  const implementation: UntypedServiceImplementation = {
    get: (_call: ServerUnaryCall<v1.GetRequest, v1.Object>, cb: sendUnaryData<v1.Object>) => cb(null, opts.object),
    update: (call: ServerUnaryCall<v1.UpdateRequest, v1.EventAck>, cb: sendUnaryData<v1.EventAck>) => {
      fs.writeFileSync(opts.memoryLimitFile, String(call.request.resources?.memoryBytes ?? 0));
      cb(null, { eventId: 'floor', objectId: call.request.objectId, state: v1.State.STATE_RUNNING, status: v1.EventStatus.EVENT_STATUS_SUCCEEDED, error: '' });
    },
  };
  server.addService(v1.AgentServiceService, implementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return {
    address: `127.0.0.1:${port}`,
    stop: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}
