import type { LogLevel } from '@agent/option';

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

/** Set at run time (config.agents.<host>): overrides every logger's own level in this process. */
let processLevel: LogLevel | undefined;

/** JSON Lines on stderr: one object per line, easy to grep and to ship. */
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
    const line = { ts: new Date().toISOString(), level, module: this.module, msg, ...this.base, ...fields };
    process.stderr.write(JSON.stringify(line, errorReplacer) + '\n');
  }
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}
