// A limit the host's kernel cannot set is refused by the call itself
// (FAILED_PRECONDITION naming the field), not accepted and then failed: the
// agent runs in a mount namespace of its own where the blkio hierarchy is
// unmounted, so for it this kernel has no blkio controller (a real kernel
// view, as on a host built without CONFIG_BLK_CGROUP).
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { api, blockDevices, startAgent, type Agent } from '@agent/testkit';

const BLKIO = '/sys/fs/cgroup/blkio';
const MiB = 1024 * 1024;
const hasUnshare = ((): boolean => {
  try {
    execFileSync('unshare', ['--mount', 'true']);
    return true;
  } catch {
    return false;
  }
})();
const skip = !fs.existsSync(BLKIO) ? 'needs cgroup v1 with blkio mounted (the namespace takes it away)' : !hasUnshare ? 'needs unshare --mount' : false;

describe('a limit the kernel lacks is refused at the call (agent in a mount namespace without blkio; cgroup v1)', { skip }, () => {
  let agent: Agent;
  const [dev = '8:0'] = blockDevices();
  before(async () => {
    agent = await startAgent({}, undefined, ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', `umount ${BLKIO} && exec "$@"`, 'sh']);
  });
  after(async () => agent?.stop());

  const names = async (): Promise<string[]> => ((await api(agent, 'List', {})).body.objects as Array<{ spec: { name: string } }> | undefined ?? []).map((o) => o.spec.name);

  it('Create asking io_read_bps: FAILED_PRECONDITION naming spec.resources.io_read_bps, and nothing recorded', async () => {
    const logged = agent.logs.find((l) => l.msg === 'limits this host cannot set');
    assert.match(String(logged?.lacking), /io_read_bps, io_write_bps/, 'agentcore learned what the host lacks at start');
    for (const kind of [{ kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] } }, { kind: 'KIND_CGROUP', cgroup: { path: 'no-io' } }]) {
      const r = await api(agent, 'Create', { spec: { name: `no-io-${kind.kind}`, ...kind, resources: { cpu_weight: 200, io_read_bps: { [dev]: MiB } } } });
      assert.equal(r.error?.code, 'failed_precondition', JSON.stringify(r));
      assert.equal(r.error?.message, 'spec.resources.io_read_bps: this host has no cgroup v1 blkio controller');
    }
    assert.deepEqual(await names(), [], 'no object, no event: the call was refused whole');
  });

  it('Update asking io_write_bps: FAILED_PRECONDITION naming resources.io_write_bps; the object keeps its limits and other limits still apply', async () => {
    const made = await api(agent, 'Create', { spec: { name: 'with-weight', kind: 'KIND_PROCESS', process: { command: ['sleep', '600'] }, resources: { cpu_weight: 200, memory_bytes: String(64 * MiB) } }, wait: true });
    assert.equal(made.body.state, 'STATE_RUNNING', JSON.stringify(made));
    const id = made.body.objectId as string;
    try {
      const refused = await api(agent, 'Update', { object_id: id, resources: { cpu_weight: 300, io_write_bps: { [dev]: MiB } } });
      assert.equal(refused.error?.code, 'failed_precondition', JSON.stringify(refused));
      assert.equal(refused.error?.message, 'resources.io_write_bps: this host has no cgroup v1 blkio controller');
      // Removing one (-1) asks the controller too.
      const removing = await api(agent, 'Update', { object_id: id, resources: { io_write_bps: { [dev]: -1 } } });
      assert.equal(removing.error?.code, 'failed_precondition', JSON.stringify(removing));
      const got = await api(agent, 'Get', { object_id: id });
      assert.equal((got.body.appliedResources as { cpuWeight: number }).cpuWeight, 200, 'the refused update changed nothing');
      assert.equal(got.body.lastError ?? '', '', 'and left no error on the object');
      const ok = await api(agent, 'Update', { object_id: id, resources: { cpu_weight: 300 }, wait: true });
      assert.equal(ok.body.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(ok));
      assert.equal(((await api(agent, 'Get', { object_id: id })).body.appliedResources as { cpuWeight: number }).cpuWeight, 300);
    } finally {
      await api(agent, 'Delete', { object_id: id, wait: true });
    }
  });
});
