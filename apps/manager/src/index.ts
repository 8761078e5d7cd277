export { ManagerService, startManager, toChange, DOCKER_HEALTH } from './manager';
export type { KindDrivers } from './manager';
