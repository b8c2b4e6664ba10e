import type { ServerType } from '@hono/node-server';
import type { Socket } from 'node:net';

/** Node's own mark of a connection with an answer under way: the response it is writing, until it ends. */
export type HttpSocket = Socket & { _httpMessage?: { headersSent: boolean } | null };

/**
 * The server's open connections, so that a shutdown can close at once every one with no answer
 * under way: idle keep-alive ones (as closeIdleConnections does) and ones still sending a request
 * that has reached no route. `server.close()` stops Node's request timeouts, so a client halfway
 * through its headers would otherwise hold the shutdown until SHUTDOWN_TIMEOUT_SECONDS, and its
 * exit 1. Nothing is done per request.
 */
export function trackConnections(server: ServerType) {
  const open = new Set<HttpSocket>();
  server.on('connection', (socket: HttpSocket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  });
  return {
    /** Closes every connection with no answer under way. */
    closeUnanswered(): void {
      for (const socket of open) if (!socket._httpMessage) socket.destroy();
    },
  };
}
