// The pipe between the agent's own services, against real grpc-js servers on
// loopback: calls on one stream, deadlines, credentials, a service that shuts
// down or breaks off, and one without a pipe.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { GrpcService } from '@agent/option';
import { internalv1 } from '@agent/proto';
import { metrics } from '@agent/telemetry';
import { Role, TokenBook, tokenAuth, INTERNAL_ONLY, callerOf, type Access } from './auth';
import { DeadlineExceededError, NotFoundError, PermissionDeniedError, ResourceExhaustedError, UnauthenticatedError, UnavailableError } from './errors';
import { Logger } from './log';
import { connectInternal } from './pipe';
import { startGrpcServer, unary, type RunningServer } from './server';

const log = new Logger('test', 'error');
const book = new TokenBook([
  ['internal-token', Role.Internal],
  ['admin-token', Role.Admin],
]);

/** A Collector service whose GetTask answers with the server's generation; "missing" is NOT_FOUND, "held" waits for release(), "never" never answers. */
class Service {
  ran = 0;
  roles: string[] = [];
  private held: Array<() => void> = [];
  constructor(readonly generation: number) {}
  release(): void {
    for (const r of this.held.splice(0)) r();
  }
  readonly implementation = {
    getTask: unary(log, async (r: internalv1.ObjectRef, call): Promise<internalv1.CollectTask> => {
      this.ran++;
      this.roles.push(callerOf(call)?.role ?? '');
      if (r.objectId === 'missing') throw new NotFoundError(`no collect task for ${r.objectId}`);
      if (r.objectId === 'held') await new Promise<void>((resolve) => this.held.push(resolve));
      if (r.objectId === 'never') await new Promise(() => undefined);
      return { objectId: r.objectId, intervalMs: this.generation, forwarding: true };
    }),
  };
}

async function serve(service: Service, address = '127.0.0.1:0', access: Access = INTERNAL_ONLY): Promise<RunningServer> {
  return startGrpcServer({
    listeners: [{ address, authenticate: tokenAuth(book) }],
    log,
    services: [{ name: GrpcService.Collector, definition: internalv1.CollectorService, implementation: service.implementation, access }],
  });
}

/** grpc_server_handled_total for one method, all codes. */
async function handled(method: string): Promise<number> {
  const text = await metrics.registry.getSingleMetricAsString('grpc_server_handled_total');
  let n = 0;
  for (const line of text.split('\n')) if (line.includes(`grpc_method="${method}"`)) n += Number(line.slice(line.lastIndexOf(' ') + 1));
  return n;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('the pipe between the agent\'s services', () => {
  it('carries many calls on one stream, each answered with its own reply, errors keeping their kind', async () => {
    const service = new Service(1);
    const server = await serve(service);
    const peer = connectInternal(internalv1.CollectorClient, server.address, 'internal-token');
    const streams0 = await handled('Exchange');
    try {
      const ids = Array.from({ length: 50 }, (_, i) => `o${i}`);
      const answers = await Promise.all(ids.map((objectId) => peer.call('getTask', { objectId })));
      assert.deepEqual(answers.map((a) => a.objectId), ids);
      await assert.rejects(peer.call('getTask', { objectId: 'missing' }), (err: Error) => err instanceof NotFoundError && /no collect task for missing/.test(err.message));
      assert.equal(service.ran, 51);
      assert.deepEqual(new Set(service.roles), new Set([Role.Internal]), 'the handler sees the stream\'s caller');
    } finally {
      peer.close();
      await sleep(100);
      await server.shutdown(1_000);
    }
    assert.equal((await handled('Exchange')) - streams0, 1, '51 calls, one stream');
  });

  it('a call past its deadline is DEADLINE_EXCEEDED, and the stream carries the next', async () => {
    const service = new Service(1);
    const server = await serve(service);
    const peer = connectInternal(internalv1.CollectorClient, server.address, 'internal-token');
    try {
      await assert.rejects(peer.call('getTask', { objectId: 'never' }, { timeoutMs: 200 }), DeadlineExceededError);
      assert.equal((await peer.call('getTask', { objectId: 'after' })).objectId, 'after');
    } finally {
      peer.close();
      await server.shutdown(200);
    }
  });

  it('opens only with the internal token: a user token is PERMISSION_DENIED, a wrong one UNAUTHENTICATED, and no handler runs', async () => {
    const service = new Service(1);
    const server = await serve(service);
    const admin = connectInternal(internalv1.CollectorClient, server.address, 'admin-token');
    const wrong = connectInternal(internalv1.CollectorClient, server.address, 'nope');
    try {
      await assert.rejects(admin.call('getTask', { objectId: 'a' }), PermissionDeniedError);
      await assert.rejects(wrong.call('getTask', { objectId: 'a' }), UnauthenticatedError);
      assert.equal(service.ran, 0);
    } finally {
      admin.close();
      wrong.close();
      await server.shutdown(500);
    }
  });

  it('a service shutting down answers what it runs; a call made meanwhile waits and is answered by the service started again', async () => {
    const first = new Service(1);
    const server = await serve(first);
    const peer = connectInternal(internalv1.CollectorClient, server.address, 'internal-token');
    let again: RunningServer | undefined;
    try {
      await peer.call('getTask', { objectId: 'warm' });
      const running = peer.call('getTask', { objectId: 'held' });
      await sleep(50);
      const stopped = server.shutdown(5_000);
      await sleep(50);
      const meanwhile = peer.call('getTask', { objectId: 'meanwhile' }, { timeoutMs: 10_000 });
      let settled = false;
      void meanwhile.then(() => (settled = true), () => (settled = true));
      await sleep(100);
      first.release();
      assert.equal((await running).intervalMs, 1, 'the running call is answered by the service that ran it');
      await stopped;
      assert.equal(settled, false, 'the call made during shutdown was not failed, it waits');
      const second = new Service(2);
      again = await serve(second, server.address);
      const answer = await meanwhile;
      assert.equal(answer.intervalMs, 2, 'answered by the service started again');
      assert.equal(first.ran, 2, 'the first service never ran the call made during its shutdown');
    } finally {
      peer.close();
      await again?.shutdown(500);
    }
  });

  it('a service that breaks off fails the calls it had with UNAVAILABLE; the next call reaches it once it is back', async () => {
    const first = new Service(1);
    const server = await serve(first);
    const peer = connectInternal(internalv1.CollectorClient, server.address, 'internal-token');
    let again: RunningServer | undefined;
    try {
      const lost = peer.call('getTask', { objectId: 'never' });
      await sleep(50);
      await server.shutdown(0); // cut off at once, with the call running
      await assert.rejects(lost, UnavailableError);
      again = await serve(new Service(2), server.address);
      assert.equal((await peer.call('getTask', { objectId: 'next' })).intervalMs, 2);
    } finally {
      peer.close();
      await again?.shutdown(500);
    }
  });

  it('a request over a MiB goes on its own: one past the server\'s limit is RESOURCE_EXHAUSTED alone, the calls on the pipe go on', async () => {
    const service = new Service(1);
    const server = await serve(service);
    const peer = connectInternal(internalv1.CollectorClient, server.address, 'internal-token');
    const streams0 = await handled('Exchange');
    try {
      await peer.call('getTask', { objectId: 'first' });
      const held = peer.call('getTask', { objectId: 'held' });
      const big = peer.call('getTask', { objectId: 'x'.repeat(2 * 1024 * 1024) });
      const huge = assert.rejects(peer.call('getTask', { objectId: 'x'.repeat(5 * 1024 * 1024) }), ResourceExhaustedError);
      assert.equal((await big).objectId.length, 2 * 1024 * 1024);
      await huge;
      service.release();
      assert.equal((await held).objectId, 'held', 'the call on the pipe meanwhile is answered');
      assert.equal((await peer.call('getTask', { objectId: 'after' })).objectId, 'after');
    } finally {
      peer.close();
      await sleep(100);
      await server.shutdown(500);
    }
    assert.equal((await handled('Exchange')) - streams0, 1, 'one stream all along');
  });

  it('a service with no pipe gets unary calls', async () => {
    const service = new Service(1);
    // Not INTERNAL_ONLY itself: this listener serves no pipe.
    const server = await serve(service, '127.0.0.1:0', { roles: [Role.Internal] });
    const peer = connectInternal(internalv1.CollectorClient, server.address, 'internal-token');
    const streams0 = await handled('Exchange');
    try {
      assert.equal((await peer.call('getTask', { objectId: 'a' })).objectId, 'a');
      assert.equal((await peer.call('getTask', { objectId: 'b' })).objectId, 'b');
      assert.equal(service.ran, 2);
      assert.equal((await handled('Exchange')) - streams0, 0);
    } finally {
      peer.close();
      await server.shutdown(500);
    }
  });
});
