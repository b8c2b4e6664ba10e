import net from 'node:net';
import type { Config } from './config.js';

/** A port taken or not ours to bind is the operator's to fix: a sentence on stderr, and exit 1. */
export function exitCannotListen({ host, port }: Pick<Config, 'host' | 'port'>, error: NodeJS.ErrnoException): never {
  const why = error.code === 'EADDRINUSE' ? 'the address is in use (by another tokenmint, or another server)' : error.code === 'EACCES' ? 'permission denied' : error.message;
  process.stderr.write(`tokenmint: cannot listen on ${host}:${port}: ${why}\n`);
  process.exit(1);
}

/**
 * Binds the configured address and lets it go again: resolves to the port (for PORT=0, a free one),
 * or exits as exitCannotListen. The primary of a cluster, which does not listen itself, asks this
 * before it forks, so that a port already taken is said once, not by every worker.
 */
export function probePort(config: Pick<Config, 'host' | 'port'>): Promise<number> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (error) => exitCannotListen(config, error));
    probe.listen(config.port, config.host, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
