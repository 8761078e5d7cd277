// The machine's floor for a call: a bare grpc-js server with the agent's own
// service definition and messages, doing only the work itself (an Update
// writes a memory limit file, a Get answers a stored object): no
// authentication, no tracing, no hops between services. It runs in a process
// of its own, as the agent does (a server in the client's process would save
// the wake-ups between processes), and the bench calls it with the same
// client as the agent, in the same run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { v1 } from '@agent/proto';
import { spawnServer } from './child-server';

export interface Floor {
  readonly address: string;
  stop(): Promise<void>;
}

/** The floor server in a child process (floor-main.js). */
export async function spawnFloor(opts: { readonly object: v1.Object; readonly memoryLimitFile: string }): Promise<Floor> {
  const objectFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'agent-floor-')), 'object.json');
  fs.writeFileSync(objectFile, JSON.stringify(v1.Object.toJSON(opts.object)));
  const server = await spawnServer('floor-main.js', [objectFile, opts.memoryLimitFile]);
  return {
    address: server.address,
    stop: async () => {
      await server.stop();
      fs.rmSync(path.dirname(objectFile), { recursive: true, force: true });
    },
  };
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
