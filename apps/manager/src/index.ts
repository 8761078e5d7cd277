export { ManagerService, startManager } from './manager';
