import * as os from 'node:os';
import { trace, type TracerProvider } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { JaegerPropagator } from '@opentelemetry/propagator-jaeger';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { RoutingTracerProvider } from './routing';
import { serviceName, type Env, type Telemetry } from './telemetry';

// The OpenTelemetry SDK, started when spans are exported. Only telemetry.ts
// loads this file, and only then.

/** The OTLP trace exporter the standard OTEL_EXPORTER_OTLP_* variables ask for. */
function exporterFromEnv(env: Env): SpanExporter {
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || 'http/protobuf';
  // Only the exporter asked for is loaded.
  switch (protocol) {
    case 'grpc': {
      const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-grpc') as typeof import('@opentelemetry/exporter-trace-otlp-grpc');
      return new OTLPTraceExporter();
    }
    case 'http/json': {
      const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
      return new OTLPTraceExporter();
    }
    case 'http/protobuf': {
      const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto') as typeof import('@opentelemetry/exporter-trace-otlp-proto');
      return new OTLPTraceExporter();
    }
    default:
      throw new Error(`OTEL_EXPORTER_OTLP_PROTOCOL: expected grpc, http/protobuf or http/json, got ${JSON.stringify(protocol)}`);
  }
}

/**
 * Starts the Node SDK: it owns the context manager and the propagators (W3C
 * traceparent and baggage, plus Jaeger's uber-trace-id); each module gets a
 * tracer provider of its own so that its spans carry its own service.name.
 */
export function startSdk(opts: { process: string; modules: readonly string[]; env: Env }): Telemetry {
  const { env } = opts;
  const exporter = exporterFromEnv(env);
  const sdk = new NodeSDK({
    serviceName: serviceName(opts.process),
    autoDetectResources: false,
    contextManager: new AsyncLocalStorageContextManager(),
    textMapPropagator: new CompositePropagator({
      propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator(), new JaegerPropagator()],
    }),
    instrumentations: [],
    spanProcessors: [], // the per-module providers below carry the processors
  });
  sdk.start();
  const providers = new Map<string, BasicTracerProvider>();
  for (const m of [...opts.modules, opts.process]) {
    providers.set(m, new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': serviceName(m), 'host.name': env.AGENT_HOST_ID ?? os.hostname() }),
      spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 500 })],
    }));
  }
  const fallback = providers.get(opts.process) as TracerProvider;
  trace.setGlobalTracerProvider(new RoutingTracerProvider(providers, fallback));
  return {
    exporting: true,
    shutdown: async (timeoutMs = 2_000) => {
      const all = Promise.allSettled([...providers.values()].map((p) => p.shutdown()).concat(sdk.shutdown()));
      await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    },
  };
}
