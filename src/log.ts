/**
 * The structured log: one JSON object per line (pino), each with `time` (ISO 8601, UTC),
 * `level` (a name: trace, debug, info, warn, error, fatal), `component` (the part of the
 * server that speaks: server, ximss, http, smtp, queue, delivery, auth, cluster, bus, store,
 * admin) and, for everything an operator may search or alert on, `event` (a stable dotted
 * name such as `login.failed` or `queue.deferred`; README "Logs" lists them). `msg` is for
 * people and may change; scripts use `event` and the fields.
 *
 * Secrets never reach the log: callers do not log them, and the fields that could hold one
 * are redacted as a second line of defence.
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Field names that may carry a secret, wherever they appear (two levels deep). */
const SECRET_FIELDS = ['password', 'newPassword', 'oldPassword', 'authData', 'secret', 'relayPassword', 'token', 'key', 'privateKey', 'cookie', 'authorization'];

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go (default: standard output, written synchronously so nothing is lost on exit). */
  destination?: DestinationStream;
  /** Fields on every line (this node's id in a cluster). */
  base?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: options.base ?? {},
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...SECRET_FIELDS, ...SECRET_FIELDS.map((name) => `*.${name}`)], censor: '[redacted]' },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A logger that drops everything (tests and tools that do not care). */
export const silentLogger: Logger = createLogger({ level: 'silent' });

/** The text of an error for a log field (its stack at debug level is the caller's choice). */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
