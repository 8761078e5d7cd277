// Bad input gets a clear status naming the field, never a crash, a hang or a
// half-made object. Runs against the real daemon over gRPC.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { status } from '@grpc/grpc-js';
import { v1 } from '@agent/proto';
import { api, BUSYBOX, sh, startAgent, waitFor, type Agent, apiClient, rawCall, type Api } from '@agent/testkit';

const MiB = 1024 * 1024;
const container = (over: Partial<v1.ObjectSpec> = {}): v1.ObjectSpec =>
  v1.ObjectSpec.fromPartial({ name: 'bad', kind: v1.Kind.KIND_CONTAINER, container: { image: BUSYBOX, command: ['sleep', '60'] }, ...over });
const processSpec = (p: Partial<v1.ProcessSpec>, over: Partial<v1.ObjectSpec> = {}): v1.ObjectSpec =>
  v1.ObjectSpec.fromPartial({ name: 'bad', kind: v1.Kind.KIND_PROCESS, process: { command: ['sleep', '60'], ...p }, ...over });

interface Case {
  readonly name: string;
  readonly method: keyof v1.AgentServiceClient;
  readonly req: object;
  readonly code: status;
  /** The status message must start with this (the field's path). */
  readonly field: string;
}

const INVALID: Case[] = [
  { name: 'create without spec', method: 'create', req: {}, code: status.INVALID_ARGUMENT, field: 'spec:' },
  { name: 'missing kind', method: 'create', req: { spec: container({ kind: v1.Kind.KIND_UNSPECIFIED }) }, code: status.INVALID_ARGUMENT, field: 'spec.kind:' },
  { name: 'unknown kind', method: 'create', req: { spec: container({ kind: 42 as v1.Kind }) }, code: status.INVALID_ARGUMENT, field: 'spec.kind:' },
  { name: 'missing name', method: 'create', req: { spec: container({ name: '' }) }, code: status.INVALID_ARGUMENT, field: 'spec.name:' },
  { name: 'name with a slash', method: 'create', req: { spec: container({ name: 'a/b' }) }, code: status.INVALID_ARGUMENT, field: 'spec.name:' },
  { name: 'oversized name', method: 'create', req: { spec: container({ name: 'n'.repeat(64) }) }, code: status.INVALID_ARGUMENT, field: 'spec.name:' },
  { name: 'container kind without container', method: 'create', req: { spec: v1.ObjectSpec.fromPartial({ name: 'x', kind: v1.Kind.KIND_CONTAINER }) }, code: status.INVALID_ARGUMENT, field: 'spec.container:' },
  { name: 'two workloads at once', method: 'create', req: { spec: container({ process: { command: ['sleep'], env: [], cwd: '', user: '' } }) }, code: status.INVALID_ARGUMENT, field: 'spec.process:' },
  { name: 'empty image', method: 'create', req: { spec: container({ container: { image: '', command: [], env: [] } }) }, code: status.INVALID_ARGUMENT, field: 'spec.container.image:' },
  { name: 'image with spaces', method: 'create', req: { spec: container({ container: { image: 'bad image', command: [], env: [] } }) }, code: status.INVALID_ARGUMENT, field: 'spec.container.image:' },
  { name: 'oversized image', method: 'create', req: { spec: container({ container: { image: 'a'.repeat(300), command: [], env: [] } }) }, code: status.INVALID_ARGUMENT, field: 'spec.container.image:' },
  { name: 'env without =', method: 'create', req: { spec: container({ container: { image: BUSYBOX, command: [], env: ['NOVALUE'] } }) }, code: status.INVALID_ARGUMENT, field: 'spec.container.env[0]:' },
  { name: 'empty process command', method: 'create', req: { spec: processSpec({ command: [] }) }, code: status.INVALID_ARGUMENT, field: 'spec.process.command:' },
  { name: 'empty executable', method: 'create', req: { spec: processSpec({ command: ['', 'x'] }) }, code: status.INVALID_ARGUMENT, field: 'spec.process.command[0]:' },
  { name: 'oversized argument', method: 'create', req: { spec: processSpec({ command: ['sleep', 'x'.repeat(5000)] }) }, code: status.INVALID_ARGUMENT, field: 'spec.process.command[1]:' },
  { name: 'relative cwd', method: 'create', req: { spec: processSpec({ cwd: 'tmp' }) }, code: status.INVALID_ARGUMENT, field: 'spec.process.cwd:' },
  { name: 'cgroup path escaping with ..', method: 'create', req: { spec: v1.ObjectSpec.fromPartial({ name: 'g', kind: v1.Kind.KIND_CGROUP, cgroup: { path: 'a/../../etc' } }) }, code: status.INVALID_ARGUMENT, field: 'spec.cgroup.path:' },
  { name: 'absolute cgroup path', method: 'create', req: { spec: v1.ObjectSpec.fromPartial({ name: 'g', kind: v1.Kind.KIND_CGROUP, cgroup: { path: '/sys/fs/cgroup' } }) }, code: status.INVALID_ARGUMENT, field: 'spec.cgroup.path:' },
  { name: 'cgroup path naming a control file', method: 'create', req: { spec: v1.ObjectSpec.fromPartial({ name: 'g', kind: v1.Kind.KIND_CGROUP, cgroup: { path: 'memory.limit_in_bytes' } }) }, code: status.INVALID_ARGUMENT, field: 'spec.cgroup.path:' },
  { name: 'negative cpus', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ cpus: -1, memoryBytes: 0, pidsLimit: 0 }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.cpus:' },
  { name: 'absurd cpus', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ cpus: 1e6, memoryBytes: 0, pidsLimit: 0 }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.cpus:' },
  { name: 'negative memory', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ cpus: 0, memoryBytes: -5, pidsLimit: 0 }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.memory_bytes:' },
  { name: 'memory too small', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ cpus: 0, memoryBytes: 1024, pidsLimit: 0 }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.memory_bytes:' },
  { name: 'absurd memory', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ cpus: 0, memoryBytes: 2 ** 52, pidsLimit: 0 }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.memory_bytes:' },
  { name: 'negative pids', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ cpus: 0, memoryBytes: 0, pidsLimit: -3 }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.pids_limit:' },
  { name: 'cpuset not a list', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ cpusetCpus: '0-x' }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.cpuset_cpus:' },
  { name: 'cpuset range backwards', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ cpusetMems: '3-1' }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.cpuset_mems:' },
  { name: 'cpu weight out of range', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ cpuWeight: 20_000 }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.cpu_weight:' },
  { name: 'memory high too small', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ memoryHighBytes: 4096 }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.memory_high_bytes:' },
  { name: 'removing a cpuset at create', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ cpusetCpus: '-1' }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.cpuset_cpus:' },
  { name: 'device key not MAJOR:MINOR', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ ioReadBps: { sda: 1024 } }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.io_read_bps["sda"]:' },
  { name: 'device limit of 0', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ ioWriteBps: { '8:0': 0 } }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.io_write_bps["8:0"]:' },
  { name: 'more than 16 devices', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ ioReadBps: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`8:${i * 16}`, 1024])) }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.io_read_bps:' },
  { name: 'update with a bad device key', method: 'update', req: { objectId: 'obj-x', resources: v1.Resources.fromPartial({ ioWriteBps: { '8-0': -1 } }), labels: {} }, code: status.INVALID_ARGUMENT, field: 'resources.io_write_bps["8-0"]:' },
  { name: 'swap without memory', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ memorySwapBytes: 128 * MiB }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.memory_swap_bytes:' },
  { name: 'swap below memory', method: 'create', req: { spec: container({ resources: v1.Resources.fromPartial({ memoryBytes: 128 * MiB, memorySwapBytes: 64 * MiB }) }) }, code: status.INVALID_ARGUMENT, field: 'spec.resources.memory_swap_bytes:' },
  { name: 'update with a negative cpu weight', method: 'update', req: { objectId: 'obj-x', resources: v1.Resources.fromPartial({ cpuWeight: -7 }), labels: {} }, code: status.INVALID_ARGUMENT, field: 'resources.cpu_weight:' },
  { name: 'reserved label prefix', method: 'create', req: { spec: container({ labels: { 'io.agent.managed': 'false' } }) }, code: status.INVALID_ARGUMENT, field: 'spec.labels' },
  { name: 'oversized request_id', method: 'create', req: { spec: container(), requestId: 'r'.repeat(200) }, code: status.INVALID_ARGUMENT, field: 'request_id:' },
  { name: 'update without object_id', method: 'update', req: { resources: v1.Resources.fromPartial({ cpus: 1, memoryBytes: 0, pidsLimit: 0 }) }, code: status.INVALID_ARGUMENT, field: 'object_id:' },
  { name: 'update with nothing to change', method: 'update', req: { objectId: 'obj-x' }, code: status.INVALID_ARGUMENT, field: 'resources:' },
  { name: 'update with memory -7', method: 'update', req: { objectId: 'obj-x', resources: v1.Resources.fromPartial({ cpus: 0, memoryBytes: -7, pidsLimit: 0 }) }, code: status.INVALID_ARGUMENT, field: 'resources.memory_bytes:' },
  { name: 'oversized object_id', method: 'get', req: { objectId: 'o'.repeat(65) }, code: status.INVALID_ARGUMENT, field: 'object_id:' },
  { name: 'delete without object_id', method: 'delete', req: {}, code: status.INVALID_ARGUMENT, field: 'object_id:' },
  { name: 'push_on interval 0', method: 'pushOn', req: { objectId: 'obj-x', intervalMs: 0 }, code: status.INVALID_ARGUMENT, field: 'interval_ms:' },
  { name: 'push_on negative interval', method: 'pushOn', req: { objectId: 'obj-x', intervalMs: -100 }, code: status.INVALID_ARGUMENT, field: 'interval_ms:' },
  { name: 'push_on interval too small', method: 'pushOn', req: { objectId: 'obj-x', intervalMs: 5 }, code: status.INVALID_ARGUMENT, field: 'interval_ms:' },
  { name: 'get_event without event_id', method: 'getEvent', req: {}, code: status.INVALID_ARGUMENT, field: 'event_id:' },
  { name: 'list with unknown kind', method: 'list', req: { kind: 9 }, code: status.INVALID_ARGUMENT, field: 'kind:' },
  { name: 'list with a negative page_size', method: 'list', req: { pageSize: -1 }, code: status.INVALID_ARGUMENT, field: 'page_size:' },
  { name: 'list with a made-up page_token', method: 'list', req: { pageToken: 'bm9wZQ' }, code: status.INVALID_ARGUMENT, field: 'page_token:' },
  { name: 'cgroup path reserved for processes', method: 'create', req: { spec: v1.ObjectSpec.fromPartial({ name: 'g', kind: v1.Kind.KIND_CGROUP, cgroup: { path: 'proc-obj-0123/x' } }) }, code: status.INVALID_ARGUMENT, field: 'spec.cgroup.path:' },
];

const NOT_FOUND: Case[] = [
  { name: 'get unknown object', method: 'get', req: { objectId: 'obj-nope' }, code: status.NOT_FOUND, field: 'no object obj-nope' },
  { name: 'update unknown object', method: 'update', req: { objectId: 'obj-nope', resources: v1.Resources.fromPartial({ cpus: 1, memoryBytes: 0, pidsLimit: 0 }) }, code: status.NOT_FOUND, field: 'no object' },
  { name: 'delete unknown object', method: 'delete', req: { objectId: 'obj-nope' }, code: status.NOT_FOUND, field: 'no object' },
  { name: 'push_on unknown object', method: 'pushOn', req: { objectId: 'obj-nope', intervalMs: 1000 }, code: status.NOT_FOUND, field: 'no object' },
  { name: 'push_off unknown object', method: 'pushOff', req: { objectId: 'obj-nope' }, code: status.NOT_FOUND, field: 'no object' },
  { name: 'push_once unknown object', method: 'pushOnce', req: { objectId: 'obj-nope' }, code: status.NOT_FOUND, field: 'no object' },
  { name: 'unknown event', method: 'getEvent', req: { eventId: 'evt-nope' }, code: status.NOT_FOUND, field: 'no event evt-nope' },
];

describe('bad input', () => {
  let agent: Agent;
  let client: Api;

  before(async () => {
    agent = await startAgent();
    client = apiClient(agent.address, agent.token);
  });
  after(async () => {
    client?.close();
    await agent?.stop();
  });

  for (const c of [...INVALID, ...NOT_FOUND]) {
    it(`${c.name} -> ${status[c.code]}`, async () => {
      const got = await rawCall(client.client, c.method, c.req, agent.token);
      assert.equal(status[got.code], status[c.code], got.details);
      assert.ok(got.details.startsWith(c.field), `message ${JSON.stringify(got.details)} does not start with ${JSON.stringify(c.field)}`);
    });
  }

  it('no object was made by any rejected request', async () => {
    const list = await client.call('list', v1.ListRequest.fromPartial({ includeDeleted: true }));
    assert.deepEqual(list.objects, []);
    assert.equal(await sh('docker', ['ps', '-aq', '--filter', `label=io.agent.host-id=${agent.hostId}`]), '');
  });

  it('buf curl shows the field in a JSON error, like grpcurl', async () => {
    const r = await api(agent, 'Create', { spec: { name: 'x', kind: 'KIND_PROCESS', process: { command: [] } } });
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, 'invalid_argument');
    assert.match(r.error?.message ?? '', /^spec\.process\.command: /);
  });

  it('a name in use -> ALREADY_EXISTS, and the first object is untouched', async () => {
    const first = await client.call('create', { spec: processSpec({}, { name: 'dup' }), requestId: '', wait: true });
    const second = await rawCall(client.client, 'create', { spec: processSpec({}, { name: 'dup' }) }, agent.token);
    assert.equal(status[second.code], 'ALREADY_EXISTS');
    assert.match(second.details, /"dup"/);
    assert.equal((await client.call('get', { objectId: first.objectId })).state, v1.State.STATE_RUNNING);
    await client.call('delete', { objectId: first.objectId, wait: true });
    // Once deleted, the name is free again.
    const again = await client.call('create', { spec: processSpec({}, { name: 'dup' }), requestId: '', wait: true });
    assert.equal(again.state, v1.State.STATE_RUNNING);
    await client.call('delete', { objectId: again.objectId, wait: true });
  });

  it('an int64 beyond 2^53-1 -> INVALID_ARGUMENT naming the field (buf curl, as grpcurl sends it)', async () => {
    for (const [method, body, field] of [
      ['Create', { spec: { name: 'huge', kind: 'KIND_PROCESS', process: { command: ['sleep', '60'] }, resources: { memory_bytes: '9223372036854775807' } } }, 'spec.resources.memory_bytes'],
      ['Update', { object_id: 'obj-x', resources: { pids_limit: '-9007199254740993' } }, 'resources.pids_limit'],
    ] as const) {
      const r = await api(agent, method, body);
      assert.equal(r.error?.code, 'invalid_argument', JSON.stringify(r));
      assert.ok(r.error?.message.startsWith(`${field}: `), r.error?.message);
    }
    // Without a token the bytes are not even looked at.
    const anon = await api(agent, 'Create', { spec: { name: 'huge', resources: { memory_bytes: '9223372036854775807' } } }, '');
    assert.equal(anon.error?.code, 'unauthenticated', JSON.stringify(anon));
  });

  it('cgroup objects may not overlap: the same path ALREADY_EXISTS, inside or around another FAILED_PRECONDITION', async () => {
    const group = (name: string, p: string): v1.CreateRequest => v1.CreateRequest.fromPartial({ spec: { name, kind: v1.Kind.KIND_CGROUP, cgroup: { path: p } }, wait: true });
    const a = await client.call('create', group('outer', 'ov/a'));
    assert.equal(a.state, v1.State.STATE_RUNNING, a.error);
    try {
      for (const [name, p, code, says] of [
        ['same', 'ov/a', 'ALREADY_EXISTS', /^spec\.cgroup\.path: cgroup ov\/a is held by obj-/],
        ['inner', 'ov/a/b', 'FAILED_PRECONDITION', /^spec\.cgroup\.path: ov\/a\/b is inside cgroup ov\/a of obj-/],
        ['around', 'ov', 'FAILED_PRECONDITION', /^spec\.cgroup\.path: ov would hold cgroup ov\/a of obj-/],
      ] as const) {
        const got = await rawCall(client.client, 'create', group(name, p), agent.token);
        assert.equal(status[got.code], code, got.details);
        assert.match(got.details, says);
      }
      const sibling = await client.call('create', group('sibling', 'ov/ab'));
      assert.equal(sibling.state, v1.State.STATE_RUNNING, 'a sibling whose name merely starts the same is fine');
      await client.call('delete', { objectId: sibling.objectId, wait: true });
      assert.equal((await client.call('get', { objectId: a.objectId })).state, v1.State.STATE_RUNNING, 'deleting the sibling left ov/a alone');
    } finally {
      await client.call('delete', { objectId: a.objectId, wait: true });
    }
  });

  it('a repeated request_id does not create a second object', async () => {
    const req = { spec: processSpec({}, { name: 'idem' }), requestId: 'req-123', wait: true };
    const a = await client.call('create', req);
    const b = await client.call('create', req);
    const c = await client.call('create', { ...req, wait: false });
    assert.equal(b.objectId, a.objectId);
    assert.equal(b.eventId, a.eventId);
    assert.equal(c.objectId, a.objectId);
    const list = await client.call('list', v1.ListRequest.fromPartial({ kind: v1.Kind.KIND_PROCESS }));
    assert.equal(list.objects.filter((o) => o.spec?.name === 'idem').length, 1);
    await client.call('delete', { objectId: a.objectId, wait: true });
  });

  it('deleted objects refuse further events with FAILED_PRECONDITION', async () => {
    const made = await client.call('create', { spec: processSpec({}, { name: 'gone' }), requestId: '', wait: true });
    await client.call('delete', { objectId: made.objectId, wait: true });
    for (const [method, req] of [
      ['pushOn', { objectId: made.objectId, intervalMs: 1000 }],
      ['pushOff', { objectId: made.objectId }],
      ['update', { objectId: made.objectId, resources: v1.Resources.fromPartial({ cpus: 1, memoryBytes: 0, pidsLimit: 0 }) }],
      ['delete', { objectId: made.objectId }],
      ['pushOnce', { objectId: made.objectId }],
    ] as const) {
      const got = await rawCall(client.client, method, req, agent.token);
      assert.equal(status[got.code], 'FAILED_PRECONDITION', `${method}: ${got.details}`);
    }
  });

  it('a nonexistent image becomes FAILED with a readable last_error, and leaves nothing behind', async () => {
    const ack = await client.call('create', { spec: container({ name: 'noimage', container: { image: 'no-such-image-xyz:1', command: [], env: [] } }), requestId: '', wait: true });
    assert.equal(ack.state, v1.State.STATE_FAILED);
    assert.match(ack.error, /no-such-image-xyz/);
    const obj = await client.call('get', { objectId: ack.objectId });
    assert.equal(obj.state, v1.State.STATE_FAILED);
    assert.match(obj.lastError, /^docker: /);
    const ev = await client.call('getEvent', { eventId: ack.eventId });
    assert.equal(ev.status, v1.EventStatus.EVENT_STATUS_FAILED);
    assert.match(ev.error, /no-such-image-xyz/);
    assert.equal(await sh('docker', ['ps', '-aq', '--filter', `label=io.agent.object-id=${ack.objectId}`]), '');
    // A failed object can be pushed no more, but can be deleted.
    const push = await rawCall(client.client, 'pushOn', { objectId: ack.objectId, intervalMs: 1000 }, agent.token);
    assert.equal(status[push.code], 'FAILED_PRECONDITION');
    const del = await client.call('delete', { objectId: ack.objectId, wait: true });
    assert.equal(del.state, v1.State.STATE_DELETED);
  });

  it('a missing executable becomes FAILED, and its cgroup is removed', async () => {
    const ack = await client.call('create', { spec: processSpec({ command: ['/no/such/binary'] }, { name: 'nobin' }), requestId: '', wait: true });
    assert.equal(ack.state, v1.State.STATE_FAILED);
    assert.match(ack.error, /executable not found/);
    const memRoot = fs.existsSync('/sys/fs/cgroup/memory') ? '/sys/fs/cgroup/memory' : '/sys/fs/cgroup';
    assert.equal(fs.existsSync(`${memRoot}/${agent.cgroupParent}/proc-${ack.objectId}`), false);
    await client.call('delete', { objectId: ack.objectId, wait: true });
  });

  it('a device the host has not got fails the create FAILED_PRECONDITION naming field and device, leaving no cgroup', async () => {
    const ack = await client.call('create', { spec: processSpec({}, { name: 'nodev', resources: v1.Resources.fromPartial({ ioReadBps: { '259:999': 1024 } }) }), requestId: '', wait: true });
    assert.equal(ack.state, v1.State.STATE_FAILED);
    assert.match(ack.error, /^spec\.resources\.io_read_bps: this host has no block device 259:999/);
    for (const ctrl of ['memory', 'blkio']) assert.equal(fs.existsSync(`/sys/fs/cgroup/${ctrl}/${agent.cgroupParent}/proc-${ack.objectId}`), false, ctrl);
    await client.call('delete', { objectId: ack.objectId, wait: true });
  });

  it('a swap total that would not go with the recorded memory is refused at update FAILED_PRECONDITION naming it', async () => {
    const made = await client.call('create', { spec: processSpec({}, { name: 'swap', resources: v1.Resources.fromPartial({ memoryBytes: 64 * MiB }) }), requestId: '', wait: true });
    const bare = await client.call('create', { spec: processSpec({}, { name: 'bare' }), requestId: '', wait: true });
    try {
      for (const [objectId, says] of [
        [made.objectId, /^resources\.memory_swap_bytes: below memory_bytes/],
        [bare.objectId, /^resources\.memory_swap_bytes: needs memory_bytes/],
      ] as const) {
        const got = await rawCall(client.client, 'update', { objectId, resources: v1.Resources.fromPartial({ memorySwapBytes: 32 * MiB }), labels: {} }, agent.token);
        assert.equal(status[got.code], 'FAILED_PRECONDITION', got.details);
        assert.match(got.details, says);
      }
      assert.equal((await client.call('get', { objectId: made.objectId })).appliedResources?.memorySwapBytes, 0, 'nothing changed');
    } finally {
      await client.call('delete', { objectId: made.objectId, wait: true });
      await client.call('delete', { objectId: bare.objectId, wait: true });
    }
  });

  it('removing a container memory limit fails the update clearly and keeps the object running', async () => {
    const made = await client.call('create', { spec: container({ name: 'tight', resources: v1.Resources.fromPartial({ cpus: 0, memoryBytes: 64 * MiB, pidsLimit: 0 }) }), requestId: '', wait: true });
    assert.equal(made.state, v1.State.STATE_RUNNING, made.error);
    // Docker refuses removing a memory limit from an existing container: a clear precondition, not a crash.
    const ack = await client.call('update', { objectId: made.objectId, resources: v1.Resources.fromPartial({ cpus: 0, memoryBytes: -1, pidsLimit: 0 }), labels: {}, wait: true });
    assert.equal(ack.status, v1.EventStatus.EVENT_STATUS_FAILED);
    assert.match(ack.error, /resources\.memory_bytes: docker cannot remove this limit/);
    // Nor a swap total (Docker's -1 would be unlimited swap).
    const swap = await client.call('update', { objectId: made.objectId, resources: v1.Resources.fromPartial({ memorySwapBytes: -1 }), labels: {}, wait: true });
    assert.equal(swap.status, v1.EventStatus.EVENT_STATUS_FAILED);
    assert.match(swap.error, /resources\.memory_swap_bytes: docker cannot remove this limit/);
    const obj = await client.call('get', { objectId: made.objectId });
    assert.equal(obj.state, v1.State.STATE_RUNNING);
    assert.equal(obj.appliedResources?.memoryBytes, 64 * MiB);
    await client.call('delete', { objectId: made.objectId, wait: true });
  });

  it('Watch streams state changes and reports until the object is deleted', async () => {
    const made = await client.call('create', { spec: processSpec({}, { name: 'watched' }), requestId: '', wait: true });
    const events: v1.WatchEvent[] = [];
    const stream = client.client.watch({ objectId: made.objectId }, client.traceMetadata());
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('data', (e: v1.WatchEvent) => events.push(e));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    await waitFor('first watch event', () => events.length > 0 || undefined);
    await client.call('pushOn', { objectId: made.objectId, intervalMs: 100, wait: true });
    await waitFor('two reports on the watch', () => events.filter((e) => e.report).length >= 2 || undefined);
    await client.call('delete', { objectId: made.objectId, wait: false });
    await ended;
    const states = events.filter((e) => e.object).map((e) => e.object!.state);
    assert.equal(states[0], v1.State.STATE_RUNNING);
    assert.equal(states.at(-1), v1.State.STATE_DELETED);
    assert.ok(events.some((e) => e.object?.pushing === true));
  });

  it('Watch of an unknown object -> NOT_FOUND', async () => {
    const stream = client.client.watch({ objectId: 'obj-nope' }, client.traceMetadata());
    const err = await new Promise<{ code: number; details: string }>((resolve) => {
      stream.on('error', (e: { code: number; details: string }) => resolve(e));
      stream.on('data', () => undefined);
    });
    assert.equal(status[err.code], 'NOT_FOUND');
  });
});
