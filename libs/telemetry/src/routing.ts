import {
  context,
  createContextKey,
  trace,
  type Context,
  type Span,
  type SpanOptions,
  type Tracer,
  type TracerOptions,
  type TracerProvider,
} from '@opentelemetry/api';

const MODULE_KEY = createContextKey('agent.module');

/** Runs fn with `module` as the service that spans started inside belong to. */
export function withModule<T>(module: string, fn: () => T): T {
  return context.with(context.active().setValue(MODULE_KEY, module), fn);
}

export function activeModule(ctx: Context = context.active()): string | undefined {
  return ctx.getValue(MODULE_KEY) as string | undefined;
}

/**
 * The global tracer provider: every span goes to the provider of the module
 * it was started under (withModule), so one process can host five services,
 * each with its own service.name. Code everywhere just uses
 * trace.getTracer() from @opentelemetry/api.
 */
export class RoutingTracerProvider implements TracerProvider {
  constructor(
    private readonly providers: ReadonlyMap<string, TracerProvider>,
    private readonly fallback: TracerProvider,
  ) {}

  getTracer(name: string, version?: string, options?: TracerOptions): Tracer {
    return new RoutingTracer((ctx) => {
      const m = activeModule(ctx);
      return ((m !== undefined ? this.providers.get(m) : undefined) ?? this.fallback).getTracer(name, version, options);
    });
  }
}

class RoutingTracer implements Tracer {
  constructor(private readonly route: (ctx: Context) => Tracer) {}

  startSpan(name: string, options?: SpanOptions, ctx: Context = context.active()): Span {
    return this.route(ctx).startSpan(name, options, ctx);
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, fn: F): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(name: string, options: SpanOptions, fn: F): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(name: string, options: SpanOptions, ctx: Context, fn: F): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(name: string, a: F | SpanOptions, b?: F | Context, c?: F): ReturnType<F> {
    let options: SpanOptions = {};
    let ctx = context.active();
    let fn: F;
    if (typeof a === 'function') fn = a;
    else if (typeof b === 'function') (options = a), (fn = b);
    else (options = a), (ctx = b ?? ctx), (fn = c as F);
    const span = this.startSpan(name, options, ctx);
    return context.with(trace.setSpan(ctx, span), fn as (s: Span) => ReturnType<F>, undefined, span);
  }
}
