import type { ServerType } from '@hono/node-server';
import type { Socket } from 'node:net';

/** Node's own mark of a connection with an answer under way: the response it is writing, until it ends. */
export type HttpSocket = Socket & { _httpMessage?: { headersSent: boolean } | null };
/** A TLS connection's socket, over the TCP socket it was made of (Node's `_parent`). */
type TlsSocket = HttpSocket & { _parent?: Socket | null };

/**
 * The server's open connections, so that a shutdown can close at once every one with no answer
 * under way: idle keep-alive ones (as closeIdleConnections does) and ones still sending a request
 * that has reached no route. `server.close()` stops Node's request timeouts, so a client halfway
 * through its headers would otherwise hold the shutdown until SHUTDOWN_TIMEOUT_SECONDS, and its
 * exit 1. Nothing is done per request. With TLS a connection is its TCP socket until the handshake
 * ends (no request yet: closed like an idle one), then the TLS socket that carries its requests.
 */
export function trackConnections(server: ServerType, { secure }: { secure: boolean }) {
  const open = new Set<HttpSocket>();
  const track = (socket: HttpSocket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  };
  server.on('connection', track);
  if (secure) {
    server.on('secureConnection', (socket: TlsSocket) => {
      if (socket._parent) open.delete(socket._parent as HttpSocket);
      track(socket);
    });
  }
  return {
    /** Closes every connection with no answer under way. */
    closeUnanswered(): void {
      for (const socket of open) if (!socket._httpMessage) socket.destroy();
    },
  };
}
