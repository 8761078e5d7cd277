export { ReporterService, startReporter } from './reporter';
