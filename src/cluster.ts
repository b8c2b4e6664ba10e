import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { systemClock } from './clock.js';
import { ConfigError, type Config } from './config.js';
import { startFailure } from './files.js';
import { appKeyLimits, createAppKeyLimiter, type AppKeyCounts } from './http/app-key-limiter.js';
import { loadTlsPair } from './http/tls.js';
import { urlHost } from './http/url-host.js';
import { warnIfLowered } from './keyring/jwks-caching.js';
import { probePort } from './listen.js';
import { describeError, type Logger } from './log.js';
import { watchDatabaseFile, type DatabaseFileChange } from './storage/sqlite/file-watch.js';
import { warnAtStart } from './start-warnings.js';
import { openTokenmint } from './tokenmint.js';
import { VERSION } from './version.js';

// WORKERS > 1: a primary process that serves nothing itself forks the workers, which share the
// listening port (node:cluster hands out connections round-robin) and the SQLite file. Everything
// that must happen once across processes already does — a refresh token is consumed in one
// transaction, a due rotation is rechecked inside its own — so workers need no coordination beyond
// what a second server on the same file would need, but for what lives in memory: the metrics,
// summed here on request, and the app-key limiter's counts, each failure relayed here to the others.

const METRICS_REQUEST = 'tokenmint:metrics-request';
const METRICS_ANSWER = 'tokenmint:metrics';
const METRICS_COLLECT = 'tokenmint:metrics-collect';
const METRICS_COLLECTED = 'tokenmint:metrics-collected';
/** How long the primary waits for each serving worker's own metrics before GET /metrics fails. */
const METRICS_TIMEOUT_MS = 5000;
const MAINTENANCE_START = 'tokenmint:maintenance-start';
const HEARTBEAT = 'tokenmint:heartbeat';
const APP_KEY_FAILURE = 'tokenmint:app-key-failure';
const APP_KEY_COUNTS_REQUEST = 'tokenmint:app-key-counts-request';
const APP_KEY_COUNTS = 'tokenmint:app-key-counts';
const HEARTBEAT_INTERVAL_MS = 1000;
const RESTART_DELAY_MS = 1000;
/** The longest wait between tries at a worker that cannot start while others serve. */
const MAX_RETRY_DELAY_MS = 30_000;
/** How much longer than SHUTDOWN_TIMEOUT_SECONDS the primary waits for a worker to exit before killing it. */
const WORKER_EXIT_GRACE_MS = 2000;

/** The primary: prepares the database and master key, forks and supervises workers, forwards shutdown. */
export async function runPrimary(config: Config, logger: Logger): Promise<void> {
  // Migrate and create the master key file once, before workers race to do it; and refuse a wrong
  // master key here, where it ends the start, not in workers that would be restarted forever.
  // PORT=0 (any free port) is chosen here, once: workers started later, even after every other one
  // died (and the port with them), then listen on the port announced, not on another free one. A
  // port that is taken ends the start here, said once rather than by every worker.
  const tm = openTokenmint(config, { logger });
  let port: number;
  try {
    await tm.keyring.checkMasterKey();
    port = await probePort(config);
  } finally {
    await tm.close();
  }
  // Likewise a certificate that cannot serve ends the start here, said once.
  warnAtStart(config, logger, config.tls && loadTlsPair(config.tls).certificate);

  let closing = false;
  let maintenanceWorker: Worker | undefined;
  // A worker whose event loop is stuck (an endless loop, a stopped process) answers no one,
  // yet would never exit: one that has sent no heartbeat for WORKER_STALL_TIMEOUT_SECONDS is killed,
  // and restarted like any worker that dies.
  const lastHeartbeat = new Map<Worker, number>();
  setInterval(() => {
    if (closing) return;
    for (const [worker, at] of lastHeartbeat) {
      if (Date.now() - at <= config.workerStallTimeoutSeconds * 1000) continue;
      logger.error({ pid: worker.process.pid, silent_ms: Date.now() - at }, 'worker stopped answering; killing it');
      lastHeartbeat.delete(worker);
      worker.process.kill('SIGKILL');
    }
  }, HEARTBEAT_INTERVAL_MS).unref();
  // The start is recorded once a worker holds the port, not before: the port may be taken between
  // the probe and the workers' listen, and a start that cannot listen, next to a running server,
  // must not record itself over that server's record. The maintenance (scheduled rotations follow
  // the recorded JWKS max-age) waits for the record: its worker is told when to begin.
  let recorded = false;
  const startMaintenanceOnceRecorded = () => {
    if (recorded && maintenanceWorker && listened.has(maintenanceWorker)) maintenanceWorker.send({ type: MAINTENANCE_START }, undefined, {}, () => {});
  };
  const fork = () => {
    const runsMaintenance = maintenanceWorker === undefined;
    const worker = cluster.fork({ TOKENMINT_MAINTENANCE: runsMaintenance ? '1' : '0', PORT: String(port) });
    if (runsMaintenance) maintenanceWorker = worker;
    lastHeartbeat.set(worker, Date.now()); // a worker stuck while starting is stuck too
  };
  const recordStart = async () => {
    const tm = openTokenmint(config, { logger });
    try {
      warnIfLowered(await tm.keyring.recordServerStart(), logger, tm.clock());
    } finally {
      await tm.close();
    }
  };

  let announced = false;
  let retryDelayMs = RESTART_DELAY_MS;
  const listened = new Set<Worker>();
  cluster.on('listening', (worker, address) => {
    listened.add(worker);
    retryDelayMs = RESTART_DELAY_MS;
    logger.info({ pid: worker.process.pid, workers: listened.size }, 'worker listening');
    if (worker === maintenanceWorker) startMaintenanceOnceRecorded();
    if (announced) return;
    announced = true;
    recordStart().then(
      () => {
        if (closing) return;
        recorded = true;
        startMaintenanceOnceRecorded();
        const host = address.address ?? config.host;
        process.stderr.write(`tokenmint ${VERSION} listening on ${config.tls ? 'https' : 'http'}://${urlHost(host)}:${address.port} (database ${config.databasePath}, ${config.workers} workers)\n`);
        logger.info({ version: VERSION, node: process.version, address: host, port: address.port, database: config.databasePath, workers: config.workers }, 'listening');
      },
      (error: unknown) => {
        const failure = startFailure(config.databasePath, error);
        process.stderr.write(`tokenmint: ${failure instanceof ConfigError ? failure.message : `could not record the start: ${describeError(error).message}`}\n`);
        logger.error({ error: describeError(error) }, 'could not record the start; stopping');
        failed = true;
        shutdown('could not record the start');
      },
    );
  });

  let failed = false;
  const restarts = new Set<NodeJS.Timeout>();
  const exitWhenNoWorkers = () => {
    if (Object.keys(cluster.workers ?? {}).length > 0) return;
    logger.info('closed');
    process.exit(failed ? 1 : 0);
  };
  // Node lists a worker in cluster.workers until both its exit and the close of its channel
  // ('disconnect') have come, in either order. Looked at on exit alone, a worker whose channel
  // closed after it exited was still listed, nothing looked again, and the primary ended when its
  // event loop emptied: with status 0, a start that failed included.
  cluster.on('disconnect', () => {
    if (closing) exitWhenNoWorkers();
  });
  const restartIn = (delayMs: number) => {
    // Not unref'd: with every worker gone it is all that keeps the primary alive (unref'd, a
    // primary whose workers all died at once exited 0, and a supervisor saw a clean stop).
    const restart = setTimeout(() => {
      restarts.delete(restart);
      fork();
    }, delayMs);
    restarts.add(restart);
  };
  cluster.on('exit', (worker, code, signal) => {
    if (worker === maintenanceWorker) maintenanceWorker = undefined;
    for (const collection of collections.values()) collection.forget(worker);
    lastHeartbeat.delete(worker);
    if (!closing && !listened.delete(worker) && signal !== 'SIGKILL') {
      // It failed before it listened (it said why on stderr). Killed (the OOM killer, an operator)
      // says nothing of the next one: that one is restarted.
      if (announced && listened.size > 0) {
        // A replacement, while others serve: what stops it may pass (a certificate renewal caught
        // half done, a key file being restored). Stopping would take the others down with it: try
        // again, ever less often, and say so each time.
        logger.error({ pid: worker.process.pid, code, signal, workers: listened.size, retry_in_ms: retryDelayMs }, 'a new worker could not start; the others serve on; trying again');
        restartIn(retryDelayMs);
        retryDelayMs = Math.min(retryDelayMs * 2, MAX_RETRY_DELAY_MS);
        return;
      }
      // At start (the port taken, say), or with no worker serving: another would fail the same way,
      // and a supervisor should see the stop.
      logger.error({ pid: worker.process.pid, code, signal }, 'a worker could not start; stopping');
      failed = true;
      shutdown('worker could not start');
    }
    if (closing) {
      // A worker still starting when the stop came dies of the SIGTERM itself, before its handler
      // is set: it served nothing, so that is a clean stop too.
      const stoppedWhileStarting = signal === 'SIGTERM' && !listened.has(worker);
      failed ||= code !== 0 && !stoppedWhileStarting;
      exitWhenNoWorkers();
      return;
    }
    logger.error({ pid: worker.process.pid, code, signal }, 'worker exited; starting another');
    restartIn(RESTART_DELAY_MS);
  });

  // Every wrong app key a worker counts is relayed here to the others, and counted here too: a worker
  // that starts (a replacement) takes these counts over before it listens. Until it did, one started
  // during a block knew nothing of it, and answered the blocked address, the right key included.
  const appKeyCounts = createAppKeyLimiter({
    ...appKeyLimits(config),
    clock: systemClock,
  });

  // A worker answering GET /metrics asks here for the sum over the workers that serve. One still
  // starting has counted nothing and cannot answer yet: asked (prom-client's clusterMetrics asks every
  // worker), it made GET /metrics wait 5 s and fail while any worker started. One that exits
  // meanwhile takes its counts with it, as it would a second later.
  type Collection = { answer: (worker: Worker, message: { metrics?: object[]; error?: string }) => void; forget: (worker: Worker) => void };
  const collections = new Map<number, Collection>();
  let nextCollection = 0;
  const collectMetrics = () =>
    new Promise<string>((resolve, reject) => {
      const id = nextCollection++;
      const pending = new Set([...listened].filter((worker) => worker.isConnected()));
      const answers: object[][] = [];
      const finish = (error?: Error) => {
        clearTimeout(timeout);
        collections.delete(id);
        if (error) reject(error);
        else resolve(AggregatorRegistry.aggregate(answers).metrics());
      };
      const timeout = setTimeout(() => finish(new Error(`${pending.size} worker(s) sent no metrics within ${METRICS_TIMEOUT_MS} ms`)), METRICS_TIMEOUT_MS);
      const settled = (worker: Worker) => pending.delete(worker) && pending.size === 0 && finish();
      collections.set(id, {
        answer: (worker, message) => {
          if (!pending.has(worker)) return;
          if (message.error !== undefined) return finish(new Error(message.error));
          answers.push(message.metrics ?? []);
          settled(worker);
        },
        forget: settled,
      });
      if (pending.size === 0) return finish();
      for (const worker of pending) worker.send({ type: METRICS_COLLECT, id }, undefined, {}, () => {});
    });
  cluster.on('message', (worker, message: { type?: string; id?: number; metrics?: object[]; error?: string; failures?: unknown }) => {
    if (message?.type === HEARTBEAT && lastHeartbeat.has(worker)) lastHeartbeat.set(worker, Date.now());
    if (message?.type === APP_KEY_COUNTS_REQUEST) return void worker.send({ type: APP_KEY_COUNTS, counts: appKeyCounts.counts() }, undefined, {}, () => {});
    if (message?.type === APP_KEY_FAILURE) {
      for (const [appId, client] of failuresIn(message)) appKeyCounts.recordSharedFailure(appId, client);
      // To every other worker; one that is exiting can miss it (the callback takes the error).
      for (const other of Object.values(cluster.workers ?? {})) if (other && other !== worker && other.isConnected()) other.send(message, undefined, {}, () => {});
      return;
    }
    if (message?.type === METRICS_COLLECTED) return collections.get(message.id!)?.answer(worker, message);
    if (message?.type !== METRICS_REQUEST) return;
    collectMetrics()
      .then((text) => worker.send({ type: METRICS_ANSWER, id: message.id, text }))
      .catch((error: Error) => worker.send({ type: METRICS_ANSWER, id: message.id, error: error.message }));
  });

  // One watcher for the cluster: the workers open the file that is at the path now.
  const stopWatching = watchDatabaseFile(config.databasePath, logger, (change) => {
    failed = true;
    shutdown(`database file ${change}`);
  });
  const shutdown = (signal: NodeJS.Signals | 'worker could not start' | 'could not record the start' | `database file ${DatabaseFileChange}`) => {
    if (closing) return;
    closing = true;
    stopWatching();
    logger.info({ signal }, 'shutting down');
    for (const restart of restarts) clearTimeout(restart);
    restarts.clear();
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
    exitWhenNoWorkers(); // every worker already gone (all killed at once, between restarts): no exit event will come
    // Each worker gives up on its requests after SHUTDOWN_TIMEOUT_SECONDS; one that has not exited
    // a little after that cannot act on its own timer (stuck, stopped): kill it rather than wait for ever.
    setTimeout(() => {
      logger.error('workers did not exit in time; killing them');
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      failed = true;
    }, config.shutdownTimeoutSeconds * 1000 + WORKER_EXIT_GRACE_MS).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => {
    if (!closing) return shutdown('SIGINT');
    // A second Ctrl-C means now (each worker got it too, from the terminal; not so with kill).
    logger.error('interrupted again; exiting without waiting for in-flight requests');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
    process.exit(130);
  });

  for (let i = 0; i < config.workers; i++) fork();
}

/** In a worker: the next message of `type` from the primary. */
function messageFromPrimary<T extends { type?: string }>(type: string): Promise<T> {
  return new Promise((resolve) => {
    const onMessage = (message: T) => {
      if (message?.type !== type) return;
      process.off('message', onMessage);
      resolve(message);
    };
    process.on('message', onMessage);
  });
}

/** In the worker that runs the maintenance: resolves once the primary has recorded the start. */
export async function maintenanceMayStart(): Promise<void> {
  await messageFromPrimary(MAINTENANCE_START);
}

/** In a worker: tells the primary, every second, that its event loop still turns. */
export function sendHeartbeats(): void {
  const beat = () => process.send?.({ type: HEARTBEAT });
  beat();
  setInterval(beat, HEARTBEAT_INTERVAL_MS).unref();
}

/** The wrong app keys counted in this turn of the event loop, not yet sent (sendAppKeyFailure). */
let pendingFailures: Array<[appId: string, client: string]> = [];

/**
 * In a worker: the app-key limiter's `share`. Sends the wrong app keys it counted to the other
 * workers, through the primary, which count them too (receiveAppKeyFailures). Without it each worker
 * counted alone: a client whose connections were spread over n workers had n × APP_KEY_FAILURE_LIMIT
 * tries, and a block on one worker left the others open to it. Those of one turn of the event loop
 * go as one message, which reaches the others within a millisecond or so (a message each cost a
 * third of the rate a flood of wrong keys was refused at; README, Security model). A worker started
 * later takes over the primary's counts of them (appKeyCountsOfPrimary).
 */
export function sendAppKeyFailure(appId: string, client: string): void {
  if (pendingFailures.push([appId, client]) > 1) return;
  setImmediate(() => {
    const failures = pendingFailures;
    pendingFailures = [];
    if (process.connected) process.send!({ type: APP_KEY_FAILURE, failures }, undefined, {}, () => {});
  });
}

/** The (app, client) pairs of an APP_KEY_FAILURE message. */
const failuresIn = (message: { failures?: unknown }): Array<[appId: string, client: string]> => (Array.isArray(message.failures) ? (message.failures as Array<[string, string]>) : []);

/** In a worker: counts in `limiter` the wrong app keys the other workers send; `onBlock` for each block one of them starts here. */
export function receiveAppKeyFailures(limiter: { recordSharedFailure: (appId: string, client: string) => boolean }, onBlock: (appId: string, client: string) => void): void {
  process.on('message', (message: { type?: string; failures?: unknown }) => {
    if (message?.type !== APP_KEY_FAILURE) return;
    for (const [appId, client] of failuresIn(message)) if (limiter.recordSharedFailure(appId, client)) onBlock(appId, client);
  });
}

/**
 * In a worker, before it listens: the primary's app-key counts, to take over (AppKeyLimiter.load).
 * Failures the primary relays meanwhile are in them or come after them, as its messages keep their order.
 */
export async function appKeyCountsOfPrimary(): Promise<AppKeyCounts> {
  const answer = messageFromPrimary<{ type?: string; counts?: AppKeyCounts }>(APP_KEY_COUNTS);
  process.send!({ type: APP_KEY_COUNTS_REQUEST });
  return (await answer).counts ?? [];
}

/** In a worker: answer the primary's metric collection, and collect everyone's through it. */
export function clusterMetricsOf(registry: Registry): () => Promise<string> {
  process.on('message', (message: { type?: string; id?: number }) => {
    if (message?.type !== METRICS_COLLECT) return;
    const send = (answer: object) => process.connected && process.send!({ type: METRICS_COLLECTED, id: message.id, ...answer }, undefined, {}, () => {});
    registry.getMetricsAsJSON().then(
      (metrics) => send({ metrics }),
      (error: Error) => send({ error: error.message }),
    );
  });
  let nextId = 0;
  return () =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const onMessage = (message: { type?: string; id?: number; text?: string; error?: string }) => {
        if (message?.type !== METRICS_ANSWER || message.id !== id) return;
        process.off('message', onMessage);
        if (message.error !== undefined) reject(new Error(message.error));
        else resolve(message.text ?? '');
      };
      process.on('message', onMessage);
      process.send!({ type: METRICS_REQUEST, id });
    });
}
