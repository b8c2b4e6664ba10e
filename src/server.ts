import { serve } from '@hono/node-server';
import { createAppKeyLimiter } from './http/app-key-limiter.js';
import { createApp } from './http/app.js';
import { systemClock } from './clock.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger, type Logger } from './log.js';
import { openTokenmint, type Tokenmint } from './tokenmint.js';

function main(): void {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const tm = openTokenmint(config, { logger });
  const limiter = createAppKeyLimiter({
    limit: config.appKeyFailureLimit,
    windowSeconds: config.appKeyFailureWindowSeconds,
    maxClients: config.appKeyLimiterMaxClients,
    clock: systemClock,
  });
  const app = createApp({ ...tm, limiter, logger, trustProxyHeader: config.trustProxyHeader, jwksMaxAgeSeconds: config.jwksMaxAgeSeconds });

  const maintenance = startMaintenance(tm, logger, config.maintenanceIntervalSeconds);
  const server = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, (info) => {
    process.stderr.write(`tokenmint listening on http://${info.address}:${info.port} (database ${config.databasePath})\n`);
    logger.info({ address: info.address, port: info.port, database: config.databasePath }, 'listening');
  });

  // SIGTERM/SIGINT: stop accepting, let in-flight requests finish, close the database, exit 0.
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      logger.error('in-flight requests did not finish in time; exiting');
      process.exit(1);
    }, config.shutdownTimeoutSeconds * 1000);
    force.unref();
    server.close(async () => {
      await maintenance.stop();
      await tm.close();
      logger.info('closed');
      process.exit(0);
    });
    // Idle keep-alive connections would hold close() open.
    if ('closeIdleConnections' in server) server.closeIdleConnections();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/**
 * Runs the keyring's scheduled work (due rotations, pruning) now and every `intervalSeconds`, one run
 * at a time. Other processes on the same database may do the same: each rotation happens once.
 */
function startMaintenance(tm: Tokenmint, logger: Logger, intervalSeconds: number) {
  let running: Promise<void> | undefined;
  const run = () => {
    running ??= tm.keyring
      .maintain()
      .then(({ rotated, pruned }) => {
        for (const r of rotated) logger.info({ app_id: r.appId, kid: r.kid }, 'scheduled key rotation');
        if (pruned > 0) logger.info({ pruned }, 'pruned expired signing keys');
      })
      .catch((error: Error) => logger.error({ err: { message: error.message } }, 'key maintenance failed'))
      .finally(() => (running = undefined));
  };
  run();
  const timer = setInterval(run, intervalSeconds * 1000);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}

try {
  main();
} catch (error) {
  process.stderr.write(`tokenmint: ${error instanceof ConfigError ? error.message : String(error)}\n`);
  process.exit(1);
}
