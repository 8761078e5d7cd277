import * as os from 'node:os';
import { diag, DiagLogLevel, trace, type TracerProvider } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { JaegerPropagator } from '@opentelemetry/propagator-jaeger';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { RoutingTracerProvider } from './routing';

/** service.name of a module: agent-apiserver, agent-agentcore, ... */
export function serviceName(module: string): string {
  return `agent-${module}`;
}

export interface Telemetry {
  /** Whether spans are exported at all (an OTLP endpoint is set). */
  readonly exporting: boolean;
  /** Flushes and stops, at most timeoutMs: an unreachable collector never holds up exit. */
  shutdown(timeoutMs?: number): Promise<void>;
}

type Env = Readonly<Record<string, string | undefined>>;

/** The OTLP trace exporter the standard OTEL_EXPORTER_OTLP_* variables ask for, or none. */
function exporterFromEnv(env: Env): SpanExporter | undefined {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint || env.OTEL_TRACES_EXPORTER === 'none') return undefined;
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || 'http/protobuf';
  // Loaded on demand: a process that exports nothing loads no exporter.
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

let started: Telemetry | undefined;

/**
 * Starts the OpenTelemetry Node SDK for this process, hosting `modules`
 * (one for a service run alone, five for the daemon). It owns the context
 * manager and the propagators (W3C traceparent and baggage, plus Jaeger's
 * uber-trace-id); each module gets a tracer provider of its own so that its
 * spans carry its own service.name. Without an OTLP endpoint the SDK is not
 * started at all: nothing is recorded, propagated or exported, and no call
 * pays for context (the trace-id response header is then absent).
 */
/** Whether spans are made at all (the SDK was started: an OTLP endpoint is set); without, callers skip the span work. */
export function tracing(): boolean {
  return started?.exporting === true;
}

export function startTelemetry(opts: { process: string; modules: readonly string[]; env?: Env }): Telemetry {
  if (started) return started;
  const env = opts.env ?? process.env;
  diag.setLogger({ error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined, verbose: () => undefined }, DiagLogLevel.NONE);
  const exporter = exporterFromEnv(env);
  if (!exporter) {
    // Nothing exports: no SDK, so no context manager (AsyncLocalStorage), no
    // propagator and no span is made for any call; the API's no-op defaults answer.
    started = { exporting: false, shutdown: async () => undefined };
    return started;
  }
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
  started = {
    exporting: true,
    shutdown: async (timeoutMs = 2_000) => {
      const all = Promise.allSettled([...providers.values()].map((p) => p.shutdown()).concat(sdk.shutdown()));
      await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    },
  };
  return started;
}
