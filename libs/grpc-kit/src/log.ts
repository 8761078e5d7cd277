import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import type { LogLevel } from '@agent/option';

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

/** Set at run time (config.agents.<host>): overrides every logger's own level in this process. */
let processLevel: LogLevel | undefined;

/** The trace and span a line was written in (OpenTelemetry's log field names), when there is one. */
function traceFields(): Fields | undefined {
  const sc = trace.getSpanContext(context.active());
  return sc && isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : undefined;
}

/**
 * JSON Lines on stderr: one object per line, easy to grep and to ship. A
 * line written inside a traced call carries trace_id and span_id: the trace
 * to open in Jaeger for it.
 */
export class Logger {
  /** Changes the level of every logger in the process, live. */
  static setProcessLevel(level: LogLevel | undefined): void {
    processLevel = level;
  }

  constructor(
    readonly module: string,
    private level: LogLevel = 'info',
    private readonly base: Fields = {},
  ) {}

  setLevel(level: LogLevel): void {
    this.level = level;
  }

  child(fields: Fields): Logger {
    return new Logger(this.module, this.level, { ...this.base, ...fields });
  }

  debug(msg: string, fields?: Fields): void {
    this.write('debug', msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.write('info', msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.write('warn', msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.write('error', msg, fields);
  }

  private write(level: LogLevel, msg: string, fields?: Fields): void {
    if (ORDER[level] < ORDER[processLevel ?? this.level]) return;
    const line = { ts: new Date().toISOString(), level, module: this.module, msg, ...traceFields(), ...this.base, ...fields };
    process.stderr.write(JSON.stringify(line, errorReplacer) + '\n');
  }
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}
