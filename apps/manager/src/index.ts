export { ManagerService, startManager, toChange } from './manager';
export type { KindDrivers } from './manager';
