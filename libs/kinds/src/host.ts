import type { AgentConfig, DriverName } from '@agent/option';
import { CgroupDriver, CgroupFs, NetworkDriver, type Driver } from '@agent/drivers';
import type { v1 } from '@agent/proto';
import { KINDS, kindRow } from './kinds';

/** The drivers of one host, built from the one config and the kinds registry. */
export interface HostDrivers {
  /** Every cgroup is read and written through it (and it runs KIND_CGROUP). */
  readonly cgroup: CgroupDriver;
  /** Network segmentation of workloads that have an address (nftables). */
  readonly network: NetworkDriver;
  /** The object drivers, by name: one per kind. */
  readonly objects: ReadonlyMap<DriverName, Driver>;
}

export function createHostDrivers(config: AgentConfig): HostDrivers {
  const cgroup = new CgroupDriver(new CgroupFs(config.cgroupParent));
  const objects = new Map<DriverName, Driver>(KINDS.map((r) => [r.driver, r.build(config, { cgroup })]));
  return { cgroup, network: new NetworkDriver({ table: config.nftTable, logGroup: config.nflogGroup }), objects };
}

/** The driver that runs objects of kind; an unknown kind is INVALID_ARGUMENT naming spec.kind. */
export function driverFor(drivers: Pick<HostDrivers, 'objects'>, kind: v1.Kind): Driver {
  const name = kindRow(kind).driver;
  const d = drivers.objects.get(name);
  if (!d) throw new Error(`no ${name} driver on this host`);
  return d;
}
