import { describeError, type Logger } from './log.js';
import type { Tokenmint } from './tokenmint.js';

export interface MaintenanceResult {
  rotated: Array<{ appId: string; kid: string }>;
  prunedKeys: number;
  prunedRefreshTokens: number;
  prunedSessions: number;
}

/** How a scheduled run ended. */
export type MaintenanceOutcome = { result: MaintenanceResult } | { error: Error };

/**
 * The scheduled work: due key rotations (unless `rotate` is false), then pruning of expired keys,
 * refresh tokens and sessions, which stops early once `signal` is aborted. Safe to run from several
 * processes at once.
 */
export async function runMaintenance(tm: Tokenmint, { rotate = true, signal }: { rotate?: boolean; signal?: AbortSignal } = {}): Promise<MaintenanceResult> {
  const rotated = rotate ? await tm.keyring.rotateDue() : [];
  const prunedKeys = await tm.keyring.pruneExpiredKeys();
  const pruned = await tm.repo.pruneExpired(tm.clock(), signal);
  return { rotated, prunedKeys, prunedRefreshTokens: pruned.refreshTokens, prunedSessions: pruned.sessions };
}

/**
 * Runs maintenance now and every `intervalSeconds`, one run at a time, until stopped; `onRun` is told
 * how each run ended (metrics). Stopping cuts a long prune short (a backlog after downtime can take a
 * minute), so that a shutdown is not held by it.
 */
export function startMaintenance(tm: Tokenmint, logger: Logger, intervalSeconds: number, onRun?: (outcome: MaintenanceOutcome, seconds: number) => void) {
  let running: Promise<void> | undefined;
  const stopping = new AbortController();
  const run = () => {
    if (running) return;
    const started = performance.now();
    running = runMaintenance(tm, { signal: stopping.signal })
      .then((result) => {
        for (const r of result.rotated) logger.info({ app_id: r.appId, kid: r.kid }, 'scheduled key rotation');
        const { prunedKeys, prunedRefreshTokens, prunedSessions } = result;
        if (prunedKeys + prunedRefreshTokens + prunedSessions > 0) logger.info({ prunedKeys, prunedRefreshTokens, prunedSessions }, 'pruned');
        onRun?.({ result }, (performance.now() - started) / 1000);
      })
      .catch((error: Error) => {
        logger.error({ error: describeError(error) }, 'maintenance failed');
        onRun?.({ error }, (performance.now() - started) / 1000);
      })
      .finally(() => (running = undefined));
  };
  run();
  const timer = setInterval(run, intervalSeconds * 1000);
  timer.unref();
  return {
    async stop(): Promise<void> {
      clearInterval(timer);
      stopping.abort();
      await running;
    },
  };
}
