import cluster from 'node:cluster';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { appKeyCountsOfPrimary, maintenanceMayStart, receiveAppKeyFailures, runPrimary, sendAppKeyFailure, sendHeartbeats } from './cluster.js';
import { appKeyLimits, createAppKeyLimiter } from './http/app-key-limiter.js';
import { recordAppKeyBlock } from './http/app-auth.js';
import { createApp } from './http/app.js';
import { answerClientErrors, requestListener } from './http/client-errors.js';
import { trackConnections } from './http/connections.js';
import { urlHost } from './http/url-host.js';
import { loadTlsPair, reloadOnChange } from './http/tls.js';
import { warnIfLowered } from './keyring/jwks-caching.js';
import { exitCannotListen } from './listen.js';
import { systemClock } from './clock.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { startFailure } from './files.js';
import { createLogger, describeError, type Logger } from './log.js';
import { startMaintenance } from './maintenance.js';
import { createMetrics } from './metrics.js';
import { watchDatabaseFile } from './storage/sqlite/file-watch.js';
import { warnAtStart } from './start-warnings.js';
import { openTokenmint } from './tokenmint.js';
import { VERSION } from './version.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  try {
    if (cluster.isPrimary && config.workers > 1) await runPrimary(config, logger);
    else await runServer(config, logger);
  } catch (error) {
    throw startFailure(config.databasePath, error); // a locked or full database: a sentence, not a stack
  }
}

/** One serving process: the whole server with WORKERS=1, else one worker of the cluster. */
async function runServer(config: Config, logger: Logger): Promise<void> {
  if (cluster.isWorker) sendHeartbeats();
  const tls = config.tls && loadTlsPair(config.tls);
  if (!cluster.isWorker) warnAtStart(config, logger, tls?.certificate); // the primary warns for a cluster
  let metrics: ReturnType<typeof createMetrics> | undefined;
  // A worker opens what its primary made. One started after the database was deleted must not make
  // an empty one in its place: the primary's watch is stopping the cluster, and would then report the
  // file replaced, not deleted. One started while the master key file is away (being restored) must
  // not make a new random key there, which opens nothing and which the next start would load.
  const tm = openTokenmint(config, {
    logger,
    actor: 'server',
    onAuditEvent: (event, fields) => metrics?.onAuditEvent(event, fields),
    databaseMustExist: cluster.isWorker,
    createMasterKeyFile: cluster.isWorker ? 'when-sealing' : 'at-open',
  });
  await tm.keyring.checkMasterKey();
  metrics = createMetrics(tm.repo);
  const limiter = createAppKeyLimiter({
    ...appKeyLimits(config),
    clock: systemClock,
    share: cluster.isWorker ? sendAppKeyFailure : undefined, // the others count it too
  });
  if (cluster.isWorker) {
    // A block started here by another worker's failure: recorded here (for an app that exists), as that worker may not have seen it start.
    receiveAppKeyFailures(limiter, (appId, client) => {
      void (async () => {
        if (await tm.repo.findApp(appId)) await recordAppKeyBlock({ audit: tm.audit, limiter }, appId, client);
      })().catch((error: unknown) => logger.error({ error: describeError(error) }, 'could not record an app-key block'));
    });
    limiter.load(await appKeyCountsOfPrimary()); // a replacement started during a block enforces it too
  }
  const app = createApp({ ...tm, limiter, logger, metrics, config });

  let maintenance: ReturnType<typeof startMaintenance> | undefined;
  const requestTimeoutMs = config.requestTimeoutSeconds * 1000;
  const serverOptions = {
    requestTimeout: requestTimeoutMs,
    headersTimeout: requestTimeoutMs,
    connectionsCheckingInterval: 1000, // how often Node looks for timed-out requests (default 30 s)
    keepAliveTimeout: config.keepAliveTimeoutSeconds * 1000,
    requireHostHeader: false, // requestListener checks it, answering as the contract does
  };
  const listener = requestListener(app.fetch, { logger, metrics, https: tls !== undefined, defaultHostname: config.host });
  // A TLS handshake is held to the request timeout too, not Node's 120 s.
  const server = tls ? https.createServer({ ...serverOptions, cert: tls.cert, key: tls.key, handshakeTimeout: requestTimeoutMs }, listener) : http.createServer(serverOptions, listener);
  // A port taken or not ours to bind is the operator's to fix: a sentence and exit 1 (in a worker,
  // the primary then stops too rather than start another that fails the same way).
  const cannotListen = (error: NodeJS.ErrnoException) => exitCannotListen(config, error);
  server.on('error', cannotListen);
  answerClientErrors(server, logger, metrics, { https: tls !== undefined });
  const connections = trackConnections(server, { secure: tls !== undefined });
  const stopReloadingTls = config.tls && reloadOnChange(server as unknown as https.Server, config.tls, logger);

  // In a cluster the primary watches the file, and stops every worker.
  const stopWatching = cluster.isWorker ? undefined : watchDatabaseFile(config.databasePath, logger, (change) => shutdown(`database file ${change}`, 1));

  // SIGTERM/SIGINT: stop accepting, let in-flight requests finish, close the database, exit 0.
  let closing = false;
  const shutdown = (reason: string, exitCode = 0) => {
    if (closing) return;
    closing = true;
    stopWatching?.();
    stopReloadingTls?.();
    logger.info({ signal: reason }, 'shutting down');
    const force = setTimeout(() => {
      logger.error('in-flight requests did not finish in time; exiting');
      process.exit(1);
    }, config.shutdownTimeoutSeconds * 1000);
    force.unref();
    server.close(async () => {
      await maintenance?.stop();
      await tm.close();
      logger.info('closed');
      process.exit(exitCode);
    });
    // Connections with no request being answered would hold close() open: keep-alive ones until
    // their timeout, half-sent requests for ever (close() stops the request timeouts). Close them
    // now, and the others as their last answer goes out.
    connections.closeUnanswered();
    setInterval(() => connections.closeUnanswered(), 50).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => {
    if (!closing) return shutdown('SIGINT');
    // A second Ctrl-C means now, exit 130 as a shell reports it. Nothing is lost: a renew not yet
    // committed is as if never sent, and its client's retry renews the same token.
    logger.error('interrupted again; exiting without waiting for in-flight requests');
    process.exit(130);
  });
  // A worker whose primary is gone (killed) must not linger holding the port.
  if (cluster.isWorker) process.on('disconnect', () => shutdown('disconnect'));

  // The primary of a cluster says when the maintenance may start: once it has recorded the start.
  const recordedByPrimary = cluster.isWorker && config.runsMaintenance ? maintenanceMayStart() : undefined;
  await new Promise<void>((resolve) => server.listen(config.port, config.host, resolve));
  server.off('error', cannotListen);
  // Only a start that serves records itself (the primary does it for a cluster), and before the
  // first rotation: one that failed to listen, next to a running server, would overwrite its record.
  if (!cluster.isWorker && !closing) warnIfLowered(await tm.keyring.recordServerStart(), logger, tm.clock());
  await recordedByPrimary;
  if (closing) return; // stopped meanwhile: the database may be closed already
  if (config.runsMaintenance) maintenance = startMaintenance(tm, logger, config.maintenanceIntervalSeconds, metrics.observeMaintenance);
  if (cluster.isWorker) return; // the primary announces the cluster once
  const info = server.address() as AddressInfo;
  process.stderr.write(`tokenmint ${VERSION} listening on ${tls ? 'https' : 'http'}://${urlHost(info.address)}:${info.port} (database ${config.databasePath})\n`);
  logger.info({ version: VERSION, node: process.version, address: info.address, port: info.port, database: config.databasePath }, 'listening');
}

main().catch((error: unknown) => {
  // A bad environment is the user's to fix: its message says what. Anything else: the stack, for a bug report.
  const detail = error instanceof ConfigError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`tokenmint: ${detail}\n`);
  process.exit(1);
});
