// unary(): a handler answers at once (a value) or later (a promise); either
// way its answer, or its error through the one status table, reaches the
// caller of a real grpc-js server.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { Metadata, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { GrpcService } from '@agent/option';
import { internalv1, v1 } from '@agent/proto';
import { INTERNAL_ONLY, Role, TokenBook, tokenAuth } from './auth';
import { connect, directCall } from './client';
import { Encoded, type Answer } from './encoded';
import { connectInternal } from './pipe';
import { NotFoundError } from './errors';
import { Logger } from './log';
import { startGrpcServer, unary } from './server';

const log = new Logger('test', 'error');

/** The handler's behaviour, chosen by the request's name. */
function handle(r: internalv1.CollectTarget): Answer<internalv1.CollectTask> | Promise<internalv1.CollectTask> {
  const task = { objectId: r.objectId, intervalMs: 1000, forwarding: false, last: undefined };
  switch (r.name) {
    case 'now':
      return task;
    case 'encoded':
      return new Encoded(Buffer.from(internalv1.CollectTask.encode({ ...task, intervalMs: 2000 }).finish()));
    case 'later':
      return new Promise((resolve) => setImmediate(() => resolve(task)));
    case 'throw-now':
      throw new NotFoundError(`no object ${r.objectId}`);
    case 'reject-later':
      return Promise.reject(new NotFoundError(`no object ${r.objectId}`));
    default:
      throw new Error('a bug, with a secret in its message');
  }
}

describe('unary', () => {
  it('answers, or fails with the status of its error, whether the handler returns a value, a promise or throws', async () => {
    const server = await startGrpcServer({
      listeners: [{ address: '127.0.0.1:0', authenticate: tokenAuth(new TokenBook([['t', Role.Internal]])) }],
      log,
      services: [{ name: GrpcService.Collector, definition: internalv1.CollectorService, implementation: { createTask: unary(log, handle) }, access: INTERNAL_ONLY }],
    });
    const client = connect(internalv1.CollectorClient, server.address, { token: 't' });
    try {
      for (const name of ['now', 'later']) assert.equal((await client.call('createTask', target(name))).intervalMs, 1000, name);
      for (const name of ['throw-now', 'reject-later']) await assert.rejects(client.call('createTask', target(name)), (err: Error) => err instanceof NotFoundError && err.message === 'no object o1', name);
      await assert.rejects(client.call('createTask', target('bug')), (err: { code?: number; message: string }) => err.code === status.INTERNAL && !err.message.includes('secret'));
      // Bytes the handler keeps are sent as they are, and each way of calling it gets the message they encode.
      const pipe = connectInternal(internalv1.CollectorClient, server.address, 't');
      const local = server.localPeer(internalv1.CollectorClient, 't');
      for (const [how, peer] of [['grpc', client], ['pipe', pipe], ['local', local]] as const) {
        const answer = await peer.call('createTask', target('encoded'));
        assert.deepEqual(answer, { objectId: 'o1', intervalMs: 2000, forwarding: false, last: undefined }, how);
      }
      pipe.close();
      local.close();
    } finally {
      client.close();
      await server.shutdown(200);
    }
  });

  it('sends an answer the handler has at once in the same turn, one it waits for after', async () => {
    const call = directCall(target('now'), new Metadata(), '/test/Now', 'local', Infinity) as unknown as ServerUnaryCall<internalv1.CollectTarget, internalv1.CollectTask>;
    let answered: unknown;
    const cb: sendUnaryData<internalv1.CollectTask> = (err, res) => (answered = err ?? res);
    unary(log, handle)(call, cb);
    assert.equal((answered as internalv1.CollectTask | undefined)?.intervalMs, 1000, 'answered before unary returned');
    answered = undefined;
    (call as unknown as { request: internalv1.CollectTarget }).request = target('later');
    unary(log, handle)(call, cb);
    assert.equal(answered, undefined);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal((answered as internalv1.CollectTask | undefined)?.intervalMs, 1000);
  });
});

function target(name: string): internalv1.CollectTarget {
  return { objectId: 'o1', kind: v1.Kind.KIND_PROCESS, host: false, name, image: '', origin: v1.Origin.ORIGIN_UNSPECIFIED };
}
