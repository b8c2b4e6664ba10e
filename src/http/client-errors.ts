import { getRequestListener, RequestError, type ServerType } from '@hono/node-server';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { describeError, type Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { HttpSocket } from './connections.js';
import { securityHeaders } from './security-headers.js';
import { urlHost } from './url-host.js';

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
    noteRefused(logger, metrics, status, error.code ?? error.message);
  });
}

/** A request refused before routing, counted under the route `(unparsed)` and logged with why (never what was sent). */
function noteRefused(logger: Logger, metrics: Metrics | undefined, status: number, reason: string): void {
  metrics?.observeRequest('(unparsed)', 'unknown', status, 0);
  logger.info({ route: '(unparsed)', status, reason }, 'request refused before routing');
}

/**
 * The server's request listener: node-server's, and for requests Node parsed but that name no URL —
 * an HTTP/1.1 request without Host (RFC 9112 §3.2), a Host that is no host name (`a b`), `OPTIONS *`,
 * a backslash in the path — the contract's JSON 400 with the security headers, a log line (a fixed
 * sentence, never what was sent) and the `(unparsed)` count, as for Node's own refusals; Node and
 * node-server answer those with an empty body. Give the server `requireHostHeader: false`: the
 * Host check is made here. An HTTP/1.0 request without one is for the listening address, as in
 * node-server (a load balancer's health check may send one).
 */
export function requestListener(
  fetch: Parameters<typeof getRequestListener>[0],
  { logger, metrics, https, defaultHostname }: { logger: Logger; metrics: Metrics | undefined; https: boolean; defaultHostname: string },
): (incoming: IncomingMessage, outgoing: ServerResponse) => void {
  const headers = { 'Content-Type': 'application/json', ...Object.fromEntries(securityHeaders({ https })) };
  const refused = (reason: string) => {
    noteRefused(logger, metrics, 400, reason);
    return JSON.stringify({ message: 'malformed request' });
  };
  const listener = getRequestListener(fetch, {
    hostname: urlHost(defaultHostname), // HOST=:: makes http://[::]/, not http://::/
    errorHandler(error) {
      if (error instanceof RequestError) return new Response(refused(error.message), { status: 400, headers });
      // Thrown by the app before it answered, which hono does not do: a bug, answered as one.
      logger.error({ route: '(unparsed)', status: 500, error: describeError(error) }, 'unhandled error');
      return new Response(JSON.stringify({ message: 'internal error' }), { status: 500, headers });
    },
  });
  return (incoming, outgoing) => {
    if (incoming.headers.host === undefined && incoming.httpVersion !== '1.0') {
      const body = refused('Missing host header');
      outgoing.writeHead(400, { ...headers, 'Content-Length': Buffer.byteLength(body) }).end(body);
      return;
    }
    void listener(incoming, outgoing);
  };
}
