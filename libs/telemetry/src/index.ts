export { startTelemetry, serviceName } from './telemetry';
export type { Telemetry } from './telemetry';
export { withModule, activeModule, RoutingTracerProvider } from './routing';
