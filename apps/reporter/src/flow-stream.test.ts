// The cluster's flow stream on a real nats-server (JetStream): flows handed to
// the reporter come back from a JetStream consumer as JSON; the stream is
// made with its limits if missing and left alone if present.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { connect, DiscardPolicy, nanos, type NatsConnection } from 'nats';
import { Logger } from '@agent/grpc-kit';
import { Module } from '@agent/option';
import { policyv1 } from '@agent/proto';
import { freePort, startNats, waitFor } from '@agent/testkit';
import { FLOW_STREAM, FlowStream, flowSubject } from './flow-stream';
import { ReporterService } from './reporter';

const log = new Logger(Module.Reporter, 'error');

const flow = (i: number, hostId = ''): policyv1.Flow =>
  policyv1.Flow.fromPartial({ timestamp: new Date(1_700_000_000_000 + i), srcObjectId: `o${i}`, srcIp: '10.0.0.2', dstIp: '10.0.0.3', protocol: 'tcp', dstPort: 8000 + i, verdict: policyv1.Verdict.VERDICT_VIOLATION, mode: policyv1.Mode.MODE_MONITOR, count: i + 1, hostId });

/** Every message on subject in the stream, oldest first, as parsed JSON. */
async function readBack(nc: NatsConnection, subject: string, expect: number): Promise<unknown[]> {
  const consumer = await nc.jetstream().consumers.get(FLOW_STREAM, { filterSubjects: subject });
  const out: unknown[] = [];
  while (out.length < expect) {
    const batch = await consumer.fetch({ max_messages: expect - out.length, expires: 2_000 });
    let n = 0;
    for await (const m of batch) {
      assert.equal(m.subject, subject);
      out.push(m.json());
      n++;
    }
    if (n === 0) break;
  }
  return out;
}

async function messages(nc: NatsConnection, subject: string): Promise<number> {
  const info = await (await nc.jetstreamManager()).streams.info(FLOW_STREAM, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

describe('flow stream (JetStream)', () => {
  let nats: Awaited<ReturnType<typeof startNats>>;
  let nc: NatsConnection;

  before(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('DeliverFlows with a NATS cluster store: each flow as JSON on agent.flows.<host> in stream AGENT_FLOWS, made with its limits', async () => {
    const service = new ReporterService({ hostId: 'h-nats', reportFile: 'off', reportFileMaxBytes: 0, clusterUrl: nats.url }, log);
    const subject = 'agent.flows.h-nats';
    try {
      // Handed over before the connection is up: queued, not lost.
      service.deliverFlows([flow(0), flow(1, 'elsewhere')]);
      service.deliverFlows(Array.from({ length: 48 }, (_, i) => flow(i + 2)));
      await waitFor('50 flows in the stream', async () => ((await messages(nc, subject).catch(() => 0)) >= 50 ? true : undefined));
    } finally {
      await service.close();
    }
    const got = (await readBack(nc, subject, 50)) as Array<Record<string, unknown>>;
    assert.equal(got.length, 50);
    assert.deepEqual(got[0], policyv1.Flow.toJSON({ ...flow(0), hostId: 'h-nats' }));
    assert.equal(got[1]!.hostId, 'elsewhere', 'a host id already set is kept');
    assert.deepEqual(got.map((f) => f.dstPort), Array.from({ length: 50 }, (_, i) => 8000 + i), 'in order');
    assert.ok(got.every((f) => typeof f.timestamp === 'string' && f.verdict === 'VERDICT_VIOLATION'));

    const info = await (await nc.jetstreamManager()).streams.info(FLOW_STREAM);
    assert.deepEqual(info.config.subjects, ['agent.flows.>']);
    assert.equal(info.config.max_age, nanos(24 * 60 * 60 * 1000));
    assert.equal(info.config.max_bytes, 1024 * 1024 * 1024);
    assert.equal(info.config.discard, DiscardPolicy.Old);
  });

  it('a later start finds the stream and leaves it as it is (limits included); publishing goes on', async () => {
    const jsm = await nc.jetstreamManager();
    const before = await jsm.streams.info(FLOW_STREAM);
    // An operator changed the limits: the agent must not put them back.
    await jsm.streams.update(FLOW_STREAM, { ...before.config, max_age: nanos(60 * 60 * 1000) });
    const stream = new FlowStream({ url: nats.url, hostId: 'h.two' }, log);
    try {
      assert.equal(await stream.ready, true);
      assert.equal(stream.subject, 'agent.flows.h_two');
      assert.equal(flowSubject('h.two'), stream.subject);
      stream.publish([flow(1, 'h.two'), flow(2, 'h.two')]);
      await waitFor('acknowledged', () => (stream.stats().published === 2 && stream.stats().inFlight === 0 ? true : undefined));
      assert.deepEqual(stream.stats(), { published: 2, failed: 0, dropped: 0, queued: 0, inFlight: 0 });
    } finally {
      await stream.close();
    }
    const after = await jsm.streams.info(FLOW_STREAM);
    assert.equal(after.created, before.created, 'the same stream');
    assert.equal(after.config.max_age, nanos(60 * 60 * 1000));
    const got = (await readBack(nc, 'agent.flows.h_two', 2)) as Array<Record<string, unknown>>;
    assert.deepEqual(got.map((f) => f.dstPort), [8001, 8002]);
  });

  it('with NATS unreachable: DeliverFlows does not wait, the queue is bounded (oldest dropped, counted), close does not hang', async () => {
    const stream = new FlowStream({ url: `nats://127.0.0.1:${await freePort()}`, hostId: 'h3', maxQueued: 10 }, log);
    const t0 = Date.now();
    stream.publish(Array.from({ length: 25 }, (_, i) => flow(i)));
    assert.ok(Date.now() - t0 < 100);
    assert.deepEqual(stream.stats(), { published: 0, failed: 0, dropped: 15, queued: 10, inFlight: 0 });
    await stream.close(500);
    assert.ok(Date.now() - t0 < 3_000, `close took ${Date.now() - t0} ms`);
    assert.equal(await stream.ready, false);
    assert.equal(stream.stats().dropped, 25);
  });
});
