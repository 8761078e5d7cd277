import * as path from 'node:path';
import type { AgentConfig } from '@agent/option';
import { CgroupDriver } from './cgroup-driver';
import { CgroupFs } from './cgroup-fs';
import { DockerDriver } from './docker-driver';
import { NetworkDriver } from './network/network-driver';
import { ProcessDriver } from './process-driver';

export interface HostDrivers {
  readonly cgroup: CgroupDriver;
  readonly process: ProcessDriver;
  readonly docker: DockerDriver;
  readonly network: NetworkDriver;
}

/** The object drivers of this host, built from the one config. */
export function createHostDrivers(config: AgentConfig): HostDrivers {
  const cgroup = new CgroupDriver(new CgroupFs(config.cgroupParent));
  return {
    cgroup,
    process: new ProcessDriver(cgroup, {
      logDir: path.join(config.dataDir, 'logs'),
      // The data dir is private (0700): a process run as an unprivileged user could not enter it.
      defaultCwd: '/',
      stopGraceMs: config.stopGraceMs,
      defaultUser: config.processUser,
      allow: config.processAllow,
      logMaxBytes: config.processLogMaxBytes,
    }),
    docker: new DockerDriver(cgroup, { socketPath: config.dockerSocket, hostId: config.hostId, stopGraceMs: config.stopGraceMs }),
    network: new NetworkDriver({ table: config.nftTable, logGroup: config.nflogGroup }),
  };
}
