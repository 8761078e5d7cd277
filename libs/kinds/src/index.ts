export { KINDS, findKind, kindNames, kindOfDriver, kindRow, workloadOf } from './kinds';
export type { ChangeField, KindChange, KindRow, SharedDrivers, WorkloadField, WorkloadOf } from './kinds';
export { admitWorkload, asksChange, changedSpec, changeFields, checkCreateLimits, checkHostLimits, checkResources, checkUpdate, redactWorkload, validateWorkload } from './checks';
export { createHostDrivers, driverFor } from './host';
export type { HostDrivers } from './host';
export { afterUpdate, asksAny, fromRuntimeInfo, stateOf, phaseState, removes, toChange, toResources, toRuntimeInfo, toWorkload, updateDiff } from './convert';
export { listPage } from './listing';
