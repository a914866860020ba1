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
const SECRET_FIELDS = new Set(['password', 'newPassword', 'oldPassword', 'authData', 'secret', 'relayPassword', 'token', 'key', 'privateKey', 'cookie', 'authorization']);
const CENSOR = '[redacted]';

export interface LoggerOptions {
  level?: LogLevel;
  /**
   * Where lines go. Default: standard output, written asynchronously — a line waits only while the
   * previous write is under way, so lines written together go out in one write instead of one
   * system call each (a busy SIP node logs thousands a second) — and flushed synchronously when
   * the process exits, an uncaught exception included; a SIGKILL, an abort or running out of
   * memory can lose the last lines.
   */
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
      formatters: { level: (label) => ({ level: label }), log: redactSecrets },
    },
    // At most 16 MiB wait for a stalled reader of standard output; beyond it lines are dropped, not memory grown.
    options.destination ?? pino.destination({ dest: 1, sync: false, maxLength: 16 * 1024 * 1024 }),
  );
}

/**
 * The fields of a line with every secret field, at the top or one object down, replaced by
 * `[redacted]`; the caller's objects are copied, never changed. (pino's own `redact` does the same
 * with paths, at several times the cost for every line.)
 */
export function redactSecrets(fields: Record<string, unknown>): Record<string, unknown> {
  let out = fields;
  for (const name in fields) {
    const value = fields[name];
    let replacement: unknown;
    if (SECRET_FIELDS.has(name)) replacement = CENSOR;
    else if (typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Error) && !ArrayBuffer.isView(value)) {
      const inner = value as Record<string, unknown>;
      for (const innerName in inner) {
        if (!SECRET_FIELDS.has(innerName)) continue;
        if (replacement === undefined) replacement = { ...inner };
        (replacement as Record<string, unknown>)[innerName] = CENSOR;
      }
    }
    if (replacement === undefined) continue;
    if (out === fields) out = { ...fields };
    out[name] = replacement;
  }
  return out;
}

/** A logger that drops everything (tests and tools that do not care). */
export const silentLogger: Logger = createLogger({ level: 'silent' });

/** The text of an error for a log field (its stack at debug level is the caller's choice). */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
