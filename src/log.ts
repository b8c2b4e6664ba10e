import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout (or `destination`). Nothing logs a token or a key by construction; the redact
 * list is a second line of defence should a header or body ever be passed to the logger by mistake.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tokenmint' },
      redact: {
        paths: ['authorization', '*.authorization', 'app_key', '*.app_key', 'refresh_token', '*.refresh_token', 'auth_token', '*.auth_token'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}
