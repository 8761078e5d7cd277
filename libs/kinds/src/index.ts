export { KINDS, findKind, kindNames, kindOfDriver, kindRow, workloadOf } from './kinds';
export type { KindRow, SharedDrivers, WorkloadField, WorkloadOf } from './kinds';
export { admitWorkload, checkCreateLimits, checkResources, checkUpdate, redactWorkload, validateWorkload } from './checks';
export { createHostDrivers, driverFor } from './host';
export type { HostDrivers } from './host';
export { afterUpdate, asksAny, fromRuntimeInfo, removes, toChange, toResources, toRuntimeInfo, toWorkload, updateDiff } from './convert';
