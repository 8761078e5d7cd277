import * as path from 'node:path';
import type { AgentConfig } from '@agent/option';
import { CgroupDriver } from './cgroup-driver';
import { CgroupFs } from './cgroup-fs';
import { DockerDriver } from './docker-driver';
import { ProcessDriver } from './process-driver';

export interface HostDrivers {
  readonly cgroup: CgroupDriver;
  readonly process: ProcessDriver;
  readonly docker: DockerDriver;
}

/** The object drivers of this host, built from the one config. */
export function createHostDrivers(config: AgentConfig): HostDrivers {
  const cgroup = new CgroupDriver(new CgroupFs(config.cgroupParent));
  return {
    cgroup,
    process: new ProcessDriver(cgroup, {
      logDir: path.join(config.dataDir, 'logs'),
      defaultCwd: config.dataDir,
      stopGraceMs: config.stopGraceMs,
    }),
    docker: new DockerDriver(cgroup, { socketPath: config.dockerSocket, hostId: config.hostId, stopGraceMs: config.stopGraceMs }),
  };
}
