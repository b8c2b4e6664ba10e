import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

const SECRET_KEYS = ['authorization', 'app_key', 'refresh_token', 'auth_token'];
const CENSOR = '[redacted]';

/**
 * JSON lines on stdout (or `destination`). Nothing logs a token or a key by construction; the redact
 * list is a second line of defence should a header or body ever be passed to the logger by mistake.
 *
 * Stdout is written synchronously, one write per line: nothing is lost when a process dies, lines of
 * several workers sharing one pipe cannot interleave (a write of a line under PIPE_BUF is atomic), and
 * it costs less than pino's default asynchronous destination, whose hop through libuv's threadpool
 * per write was 8–10 % of a renew's CPU (README, Performance). The price: a log reader that stops
 * reading stalls the server once the pipe is full.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tokenmint' },
      redact: { paths: [...SECRET_KEYS, ...SECRET_KEYS.map((key) => `*.${key}`)], censor: CENSOR },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/**
 * The logger of the per-request line, whose fields are all primitives the middleware picks. It keeps
 * the top-level redaction but not the nested one: pino runs every field of a line through its
 * wildcard (`*.key`) redactor, which re-parses each path per field — 15 % of the memory a renew
 * allocated (README, Performance) for a line that has no nested object to redact.
 */
export const requestLineLogger = (logger: Logger): Logger => logger.child({}, { redact: { paths: SECRET_KEYS, censor: CENSOR } });

/**
 * What a log line says of an unexpected error: its class, SQLite's (or Node's) code — SQLITE_BUSY,
 * SQLITE_FULL and SQLITE_IOERR call for different fixes — message and stack. Picked field by field:
 * an error's other properties may carry request data. (Not under `err`, where pino's serializer
 * would name the class of this plain object.)
 */
export function describeError(error: unknown): { type: string; code?: string; message: string; stack?: string } {
  if (!(error instanceof Error)) return { type: typeof error, message: String(error) };
  const code = (error as { code?: unknown }).code;
  return { type: error.name, ...(typeof code === 'string' ? { code } : {}), message: error.message, stack: error.stack };
}
