import type { ServerType } from '@hono/node-server';
import { STATUS_CODES } from 'node:http';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { HttpSocket } from './connections.js';
import { securityHeaders } from './security-headers.js';

/** Node's parser codes we answer with their own status; any other parse error is a 400. */
const STATUS_OF_CODE: Record<string, [number, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request timeout'],
  HPE_HEADER_OVERFLOW: [431, 'request headers too large'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'request too large'],
};

/**
 * Requests Node refuses before any route sees them — not HTTP, headers over 16 KiB, or not received
 * within the request timeout — get a JSON body in the contract's shape instead of Node's empty one,
 * are logged (the code, never the bytes received: they may hold a token) and counted under the
 * route `(unparsed)`. The connection is closed either way.
 */
export function answerClientErrors(server: ServerType, logger: Logger, metrics: Metrics | undefined, options: { https: boolean }): void {
  const security = securityHeaders(options).map(([name, value]) => `\r\n${name}: ${value}`).join('');
  server.on('clientError', (error: NodeJS.ErrnoException, socket: HttpSocket) => {
    // A reset, or an answer to this request already begun (the check Node's own handler makes):
    // nothing more can be said on this connection. Earlier answers on a keep-alive one do not count.
    if (error.code === 'ECONNRESET' || !socket.writable || socket._httpMessage?.headersSent) {
      socket.destroy();
      return;
    }
    const [status, message] = STATUS_OF_CODE[error.code ?? ''] ?? [400, 'malformed request'];
    const body = JSON.stringify({ message });
    const head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close${security}`;
    // Closed once written, as Node does: a client still sending must not keep the socket.
    socket.end(`${head}\r\n\r\n${body}`, () => socket.destroy());
    metrics?.observeRequest('(unparsed)', 'unknown', status, 0);
    logger.info({ route: '(unparsed)', status, reason: error.code ?? error.message }, 'request refused before routing');
  });
}
