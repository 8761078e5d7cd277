// A peer in the same process (the daemon): calls go straight to the handler,
// without encoding, and still neither side can change what the other holds.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { GrpcService } from '@agent/option';
import { internalv1, v1 } from '@agent/proto';
import { Role, TokenBook, tokenAuth, INTERNAL_ONLY } from './auth';
import { copyMessage } from './client';
import { NotFoundError } from './errors';
import { Logger } from './log';
import { startGrpcServer, unary } from './server';

const log = new Logger('test', 'error');

describe('a peer in the same process', () => {
  it('hands each side its own copy: what one changes afterwards, the other never sees', async () => {
    const kept: { request?: internalv1.CollectTarget; answer?: internalv1.CollectTask } = {};
    const server = await startGrpcServer({
      listeners: [{ address: '127.0.0.1:0', authenticate: tokenAuth(new TokenBook([['t', Role.Internal]])) }],
      log,
      services: [
        {
          name: GrpcService.Collector,
          definition: internalv1.CollectorService,
          implementation: {
            createTask: unary(log, async (r: internalv1.CollectTarget) => {
              if (r.objectId === 'missing') throw new NotFoundError('no object missing');
              kept.request = r;
              r.name = 'changed by the handler';
              kept.answer = { objectId: r.objectId, intervalMs: 1000, forwarding: true, last: v1.Report.fromPartial({ objectId: r.objectId, timestamp: new Date(1_000) }) };
              return kept.answer;
            }),
          },
          access: INTERNAL_ONLY,
        },
      ],
    });
    const peer = server.localPeer(internalv1.CollectorClient, 't');
    try {
      const target: internalv1.CollectTarget = { objectId: 'o1', kind: v1.Kind.KIND_PROCESS, host: false, name: 'mine', image: '', origin: v1.Origin.ORIGIN_UNSPECIFIED };
      const answer = await peer.call('createTask', target);
      assert.equal(target.name, 'mine', 'the handler changed its copy of the request, not the caller\'s');
      target.objectId = 'changed by the caller';
      assert.equal(kept.request?.objectId, 'o1', 'the caller\'s later change does not reach what the handler kept');
      assert.notEqual(answer, kept.answer);
      kept.answer!.last!.timestamp!.setTime(2_000);
      kept.answer!.intervalMs = 5;
      assert.equal(answer.intervalMs, 1000);
      assert.equal(answer.last?.timestamp?.getTime(), 1_000, 'nested values are copied too (a Date)');
      await assert.rejects(peer.call('createTask', { ...target, objectId: 'missing' }), NotFoundError);
    } finally {
      await server.shutdown(200);
    }
  });

  it('copyMessage: equal, and sharing nothing (objects, maps, arrays, Dates, bytes)', () => {
    const m = {
      s: 'x',
      n: 3,
      b: false,
      none: undefined,
      list: [{ a: 1 }, { a: 2 }],
      map: { k: { v: [1, 2] } },
      at: new Date(5),
      buf: Buffer.from('abc'),
      bytes: new Uint8Array([1, 2, 3]).subarray(1),
    };
    const c = copyMessage(m);
    assert.deepEqual(c, m);
    assert.ok(Buffer.isBuffer(c.buf), 'a Buffer stays a Buffer');
    assert.ok(c.bytes instanceof Uint8Array && c.bytes.byteLength === 2 && c.bytes.buffer.byteLength === 2, 'only the viewed bytes');
    for (const k of ['list', 'map', 'at', 'buf', 'bytes'] as const) assert.notEqual(c[k], m[k], k);
    assert.notEqual(c.list[0], m.list[0]);
    assert.notEqual(c.map.k.v, m.map.k.v);
  });
});
