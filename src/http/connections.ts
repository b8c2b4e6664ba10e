import type { ServerType } from '@hono/node-server';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * The server's connections, and how many requests each has being answered, so that a shutdown can
 * close at once every connection with none: idle keep-alive ones (as closeIdleConnections does) and
 * ones still sending a request that has reached no route. `server.close()` stops Node's request
 * timeouts, so a client halfway through its headers would otherwise hold the shutdown until
 * SHUTDOWN_TIMEOUT_SECONDS, and its exit 1.
 */
export function trackConnections(server: ServerType) {
  const answering = new Map<Socket, number>(); // pipelined requests count one each
  const open = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  });
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    answering.set(socket, (answering.get(socket) ?? 0) + 1);
    response.on('close', () => {
      const left = (answering.get(socket) ?? 1) - 1;
      if (left === 0) answering.delete(socket);
      else answering.set(socket, left);
    });
  });
  return {
    /** Closes every connection that has no request being answered. */
    closeUnanswered(): void {
      for (const socket of open) if (!answering.has(socket)) socket.destroy();
    },
  };
}
