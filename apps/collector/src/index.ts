export { CollectorService, startCollector } from './collector';
export { FlowSource } from './flow-source';
export type { FlowSourceOptions, FlowBatchHandler } from './flow-source';
