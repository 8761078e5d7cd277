export { CollectorService, driverSamplers, startCollector } from './collector';
export type { SamplerSource } from './collector';
export { FlowSource } from './flow-source';
export type { FlowSourceOptions, FlowBatchHandler } from './flow-source';
