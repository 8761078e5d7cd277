// A kill between docker create and docker start leaves a container that was
// never started: the driver must not adopt it, must purge it, and a new
// create must take its name back.
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NotFoundError } from '@agent/grpc-kit';
import { Label } from '@agent/option';
import { CgroupDriver } from './cgroup-driver';
import { CgroupFs } from './cgroup-fs';
import { DockerDriver, type ContainerWorkload } from './docker-driver';
import { NO_LIMITS } from './dimensions';
import type { WorkloadSpec } from './types';

const cgfs = new CgroupFs(`agent-halfmade-${randomBytes(4).toString('hex')}`);
const docker = new DockerDriver(new CgroupDriver(cgfs), { socketPath: '/var/run/docker.sock', hostId: 'contract', stopGraceMs: 1000 });

after(() => {
  for (const dir of Object.values(cgfs.refFor('').paths)) fs.rmSync(path.join(dir), { recursive: true, force: true });
});

describe('docker driver: a half-made container (created, never started)', () => {
  const objectId = `h${randomBytes(4).toString('hex')}`;
  const spec: WorkloadSpec<ContainerWorkload> = { objectId, name: objectId, labels: {}, resources: NO_LIMITS, workload: { image: 'local/busybox:latest', command: ['sleep', '600'], env: [] } };

  it('is not adopted, is purged, and a create of the object takes its name back', async () => {
    // What a kill between docker create and start leaves: the container under the name create gives it.
    const half = await docker.docker.createContainer({ name: `agent-${objectId}-${objectId.slice(-8)}`, Image: 'local/busybox:latest', Cmd: ['sleep', '600'], Labels: { [Label.Managed]: 'true', [Label.ObjectId]: objectId, [Label.HostId]: 'contract' } });
    await assert.rejects(docker.adopt(spec, undefined), (err: Error) => err instanceof NotFoundError && /never started/.test(err.message));
    const rt = await docker.create(spec); // the name is taken by the half-made one: it goes first
    assert.notEqual(rt.runtimeId, half.id);
    await assert.rejects(half.inspect(), /no such container/i);
    await docker.purge(spec);
    await assert.rejects(docker.docker.getContainer(rt.runtimeId).inspect(), /no such container/i);
  });
});
