export { ReporterService, startReporter } from './reporter';
export { BusOut } from './bus-out';
export { FlowStream, FLOW_STREAM, flowSubject } from './flow-stream';
