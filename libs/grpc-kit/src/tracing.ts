import type { Metadata } from '@grpc/grpc-js';
import {
  context,
  INVALID_SPAN_CONTEXT,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import { tracing, withModule } from '@agent/telemetry';

export const tracer = trace.getTracer('agent');

/** What a call gets for its span when nothing is traced: records nothing, costs nothing. */
export const NO_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** The header that carries the trace id back to callers, to paste into Jaeger. */
export const TRACE_ID_HEADER = 'trace-id';

const getter: TextMapGetter<Metadata> = {
  get: (md, key) => md.get(key).map(String),
  keys: (md) => Object.keys(md.getMap()),
};
const setter: TextMapSetter<Metadata> = {
  set: (md, key, value) => md.set(key, value),
};

/** The caller's context from W3C traceparent or Jaeger's uber-trace-id. */
export function extractContext(md: Metadata): Context {
  return propagation.extract(ROOT_CONTEXT, md, getter);
}

export function injectContext(md: Metadata, ctx: Context = context.active()): Metadata {
  propagation.inject(ctx, md, setter);
  return md;
}

/** "/pkg.Service/Method" -> rpc.* attributes. */
export function rpcAttributes(path: string): Attributes {
  const [, service = '', method = ''] = path.split('/');
  return { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method };
}

/** The span of a server call, under the caller's trace and the serving module. */
export function serverSpan<T>(module: string, path: string, md: Metadata, fn: (span: Span) => T): T {
  if (!tracing()) return fn(NO_SPAN);
  return context.with(extractContext(md), () =>
    withModule(module, () => tracer.startActiveSpan(path.slice(1), { kind: SpanKind.SERVER, attributes: rpcAttributes(path) }, fn)),
  );
}

export function endSpan(span: Span, grpcCode: number, message?: string): void {
  span.setAttribute('rpc.grpc.status_code', grpcCode);
  if (grpcCode !== 0) span.setStatus({ code: SpanStatusCode.ERROR, message });
  span.end();
}

/**
 * Runs fn in a span of its own; a thrown error is recorded on the span and
 * sets its status to error. For driver calls and flow steps.
 */
export async function traced<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  if (!tracing()) return fn(NO_SPAN);
  return tracer.startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}

export function validTraceId(span: Span): string | undefined {
  if (span === NO_SPAN) return undefined; // nothing traced: no pattern test of the zero id per call
  const sc = span.spanContext();
  return trace.isSpanContextValid(sc) ? sc.traceId : undefined;
}
