export { ReporterService, startReporter } from './reporter';
export { BusOut } from './bus-out';
