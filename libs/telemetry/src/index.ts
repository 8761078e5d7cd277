export { startTelemetry, serviceName, tracing } from './telemetry';
export type { Telemetry } from './telemetry';
export { withModule, activeModule, RoutingTracerProvider } from './routing';
export { metrics, AgentMetrics, Polled, type Rows } from './metrics';
export { ContainerExposition, enumLabel, escapeLabel, labelText, type ObjectFigures, type ObjectLabels } from './container-metrics';
