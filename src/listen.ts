import net from 'node:net';
import type { Config } from './config.js';

/** A port taken or not ours to bind is the operator's to fix: a sentence on stderr, and exit 1. */
export function exitCannotListen({ host, port }: Pick<Config, 'host' | 'port'>, error: NodeJS.ErrnoException): never {
  const why = error.code === 'EADDRINUSE' ? 'the address is in use (by another tokenmint, or another server)' : error.code === 'EACCES' ? 'permission denied' : error.message;
  process.stderr.write(`tokenmint: cannot listen on ${host}:${port}: ${why}\n`);
  process.exit(1);
}

/**
 * PORT=0 for a cluster: a free port, found by binding port 0 on the configured host and letting it
 * go, for every worker to listen on (workers that each listened on port 0 would get a new port once
 * every one of them had died). Exits as exitCannotListen if the host cannot be bound.
 */
export function freePort(config: Pick<Config, 'host'>): Promise<number> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (error) => exitCannotListen({ host: config.host, port: 0 }, error));
    probe.listen(0, config.host, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
