export { CollectorService, startCollector } from './collector';
