// One trace per request across all five services, received by a real OTLP
// receiver (tools/otlp-receiver stands in for Jaeger, which cannot run here).
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { v1 } from '@agent/proto';
import { BUSYBOX, startAgent, startOtlpReceiver, startSink, waitFor, type Agent, type Receiver, type Sink, apiClient, type Api } from '@agent/testkit';

const SERVICES = ['agent-apiserver', 'agent-agentcore', 'agent-manager', 'agent-collector', 'agent-reporter'];

/** A unary call that also returns the response metadata. */
/** The agent's admin token, sent along by callWithMetadata. */
let bearer = '';

function callWithMetadata<Res>(
  start: (md: Metadata, cb: (err: ServiceError | null, res: Res) => void) => { on(ev: 'metadata', f: (md: Metadata) => void): void },
  md = new Metadata(),
): Promise<{ res: Res; traceId: string }> {
  return new Promise((resolve, reject) => {
    let traceId = '';
    if (bearer) md.set('authorization', `Bearer ${bearer}`);
    const call = start(md, (err, res) => (err ? reject(err) : resolve({ res, traceId })));
    call.on('metadata', (m) => (traceId = String(m.get('trace-id')[0] ?? '')));
  });
}

describe('tracing (OTLP receiver standing in for Jaeger)', () => {
  let receiver: Receiver;
  let sink: Sink;
  let agent: Agent;
  let client: Api;

  before(async () => {
    receiver = await startOtlpReceiver();
    sink = await startSink();
    agent = await startAgent({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', AGENT_UPSTREAM: sink.address });
    client = apiClient(agent.address, agent.token);
    bearer = agent.token;
  });
  after(async () => {
    client?.close();
    await agent?.stop();
    await sink?.stop();
    await receiver?.stop();
  });

  const inTrace = (traceId: string) => receiver.spans.filter((s) => s.traceId === traceId);

  it('a Create with wait yields spans of all five services in one trace, whose id comes back', async () => {
    const req = v1.CreateRequest.fromPartial({ spec: { name: 'traced', kind: v1.Kind.KIND_CONTAINER, resources: { memoryBytes: 64 << 20 }, container: { image: BUSYBOX, command: ['sleep', '600'] } }, wait: true });
    const { res, traceId } = await callWithMetadata<v1.EventAck>((md, cb) => client.client.create(req, md, cb));
    assert.equal(res.state, v1.State.STATE_RUNNING, res.error);
    assert.match(traceId, /^[0-9a-f]{32}$/);
    // Each module exports its own batches: wait for the call's own span too (it ends last).
    const spans = await waitFor('spans of five services', () => {
      const got = inTrace(traceId);
      return SERVICES.every((s) => got.some((x) => x.service === s)) && got.some((x) => x.name === 'agent.v1.AgentService/Create') ? got : undefined;
    }, 10_000, 100);
    const docker = spans.filter((s) => s.name.startsWith('docker '));
    assert.ok(docker.some((s) => s.name === 'docker create'), JSON.stringify(spans.map((s) => s.name)));
    assert.ok(docker.some((s) => s.name === 'docker start' && typeof s.attributes['container.id'] === 'string'));
    for (const d of docker) assert.equal(d.service, 'agent-manager');
    assert.ok(spans.some((s) => s.name === 'cgroup write memory.limit_in_bytes' || s.name === 'docker inspect'));
    const event = spans.find((s) => s.name === 'agentcore EVENT_TYPE_CREATE');
    assert.ok(event, 'the queued event is in the caller trace');
    assert.equal(event.attributes['agent.object_id'], res.objectId);
    assert.equal(event.attributes['agent.event_id'], res.eventId);
    assert.equal(event.attributes['agent.object.kind'], 'KIND_CONTAINER');
    const create = spans.find((s) => s.name === 'agent.internal.v1.Manager/CreateObject' && s.service === 'agent-manager');
    assert.ok(create?.attributes['container.id']);
    assert.equal(create?.attributes['rpc.grpc.status_code'], 0);
    // Every span but the root has its parent in the same trace.
    const ids = new Set(spans.map((s) => s.spanId));
    const roots = spans.filter((s) => !s.parentSpanId || !ids.has(s.parentSpanId));
    assert.equal(roots.length, 1, JSON.stringify(roots.map((r) => r.name)));
    assert.equal(roots[0]!.name, 'agent.v1.AgentService/Create');
    // The log lines of the call carry its trace: the apiserver's audit line and the manager's, a hop later.
    const audit = agent.logs.find((l) => l.msg === 'mutating call' && l.method === 'Create' && l.name === 'traced');
    assert.equal(audit?.trace_id, traceId, JSON.stringify(audit));
    assert.match(String(audit?.span_id), /^[0-9a-f]{16}$/);
    const made = agent.logs.find((l) => l.msg === 'object created' && l.objectId === res.objectId);
    assert.equal(made?.trace_id, traceId, JSON.stringify(made));
    assert.ok(spans.some((s) => s.spanId === made?.span_id), 'its span is one of the trace');

    // Update: a cgroup write or docker update in its own trace.
    const upd = await callWithMetadata<v1.EventAck>((md, cb) =>
      client.client.update(v1.UpdateRequest.fromPartial({ objectId: res.objectId, resources: { memoryBytes: 96 << 20 }, wait: true }), md, cb),
    );
    await waitFor('docker update span', () => inTrace(upd.traceId).find((s) => s.name === 'docker update'));

    // PushOn, then the periodic sends: their own traces, linked to the PushOn.
    const on = await callWithMetadata<v1.EventAck>((md, cb) => client.client.pushOn(v1.PushOnRequest.fromPartial({ objectId: res.objectId, intervalMs: 100, wait: true }), md, cb));
    const forward = await waitFor('a collector forward linked to the PushOn', () =>
      receiver.spans.find((s) => s.name === 'collector forward' && s.links.some((l) => l.traceId === on.traceId)),
    );
    assert.notEqual(forward.traceId, on.traceId);
    assert.equal(forward.service, 'agent-collector');
    await waitFor('the reporter send in the forward trace', () =>
      inTrace(forward.traceId).find((s) => s.service === 'agent-reporter' && s.name === 'reporter push upstream'),
    );
    await client.call('delete', { objectId: res.objectId, wait: true });
  });

  it('accepts a W3C traceparent from the caller', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const md = new Metadata();
    md.set('traceparent', `00-${traceId}-00f067aa0ba902b7-01`);
    const got = await callWithMetadata<v1.ListResponse>((m, cb) => client.client.list(v1.ListRequest.fromPartial({}), m, cb), md);
    assert.equal(got.traceId, traceId);
    const span = await waitFor('server span', () => inTrace(traceId).find((s) => s.name === 'agent.v1.AgentService/List'));
    assert.equal(span.parentSpanId, '00f067aa0ba902b7');
  });

  it("accepts Jaeger's uber-trace-id from the caller", async () => {
    const traceId = '0000000000000000a3ce929d0e0e4736';
    const md = new Metadata();
    md.set('uber-trace-id', 'a3ce929d0e0e4736:00f067aa0ba902b8:0:1');
    // A change, so that the trace goes on into agentcore (a read is answered from its table in the apiserver's process).
    const req = v1.CreateRequest.fromPartial({ spec: { name: 'jaeger-traced', kind: v1.Kind.KIND_PROCESS, process: { command: ['sleep', '60'] } }, wait: true });
    const got = await callWithMetadata<v1.EventAck>((m, cb) => client.client.create(req, m, cb), md);
    assert.equal(got.traceId, traceId);
    await waitFor('agentcore span in the jaeger trace', () => inTrace(traceId).find((s) => s.service === 'agent-agentcore'));
    await client.call('delete', { objectId: got.res.objectId, wait: true });
  });

  it('a failed driver call is an error on its span', async () => {
    const req = v1.CreateRequest.fromPartial({ spec: { name: 'broken', kind: v1.Kind.KIND_CONTAINER, container: { image: 'no-such-image-zz:1' } }, wait: true });
    const { res, traceId } = await callWithMetadata<v1.EventAck>((md, cb) => client.client.create(req, md, cb));
    assert.equal(res.state, v1.State.STATE_FAILED);
    const failed = await waitFor('failed docker span', () => inTrace(traceId).find((s) => s.name === 'docker create' && s.status === 2));
    assert.equal(failed.service, 'agent-manager');
    await client.call('delete', { objectId: res.objectId, wait: true });
  });
});

describe('tracing with the collector unreachable', () => {
  it('calls do not slow down or fail, and exit stays quick', async () => {
    const agent = await startAgent({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' });
    const client = apiClient(agent.address, agent.token);
    try {
      for (let i = 0; i < 20; i++) {
        const ack = await client.call('create', v1.CreateRequest.fromPartial({ spec: { name: `p${i}`, kind: v1.Kind.KIND_PROCESS, process: { command: ['sleep', '60'] } }, wait: true }));
        assert.equal(ack.state, v1.State.STATE_RUNNING);
        await client.call('delete', { objectId: ack.objectId, wait: true });
      }
    } finally {
      client.close();
      const t0 = Date.now();
      assert.equal(await agent.stop(), 0);
      assert.ok(Date.now() - t0 < 5_000, `exit took ${Date.now() - t0} ms`);
    }
  });
});

describe('without an OTLP endpoint', () => {
  it('no trace is made: no trace-id header, even for a caller that sends traceparent; logs carry no trace_id', async () => {
    const agent = await startAgent();
    const client = apiClient(agent.address, agent.token);
    bearer = agent.token;
    try {
      const md = new Metadata();
      md.set('traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
      const got = await callWithMetadata<v1.EventAck>(
        (m, cb) => client.client.create(v1.CreateRequest.fromPartial({ spec: { name: 'untraced', kind: v1.Kind.KIND_CGROUP, cgroup: { path: 'untraced' } }, wait: true }), m, cb),
        md,
      );
      assert.equal(got.res.state, v1.State.STATE_RUNNING);
      assert.equal(got.traceId, '', 'no trace-id header');
      const audit = agent.logs.find((l) => l.msg === 'mutating call' && l.method === 'Create');
      assert.ok(audit, 'the audit line is written');
      assert.equal(audit.trace_id, undefined);
      await client.call('delete', { objectId: got.res.objectId, wait: true });
    } finally {
      client.close();
      await agent.stop();
    }
  });
});
