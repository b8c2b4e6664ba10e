import type { Logger } from './log.js';
import type { Tokenmint } from './tokenmint.js';

export interface MaintenanceResult {
  rotated: Array<{ appId: string; kid: string }>;
  prunedKeys: number;
  prunedRefreshTokens: number;
  prunedSessions: number;
}

/**
 * The scheduled work: due key rotations (unless `rotate` is false), then pruning of expired keys,
 * refresh tokens and sessions. Safe to run from several processes at once.
 */
export async function runMaintenance(tm: Tokenmint, { rotate = true } = {}): Promise<MaintenanceResult> {
  const rotated = rotate ? await tm.keyring.rotateDue() : [];
  const prunedKeys = await tm.keyring.pruneExpiredKeys();
  const pruned = await tm.repo.pruneExpired(tm.clock());
  return { rotated, prunedKeys, prunedRefreshTokens: pruned.refreshTokens, prunedSessions: pruned.sessions };
}

/** Runs maintenance now and every `intervalSeconds`, one run at a time, until stopped. */
export function startMaintenance(tm: Tokenmint, logger: Logger, intervalSeconds: number) {
  let running: Promise<void> | undefined;
  const run = () => {
    running ??= runMaintenance(tm)
      .then((result) => {
        for (const r of result.rotated) logger.info({ app_id: r.appId, kid: r.kid }, 'scheduled key rotation');
        const { prunedKeys, prunedRefreshTokens, prunedSessions } = result;
        if (prunedKeys + prunedRefreshTokens + prunedSessions > 0) logger.info({ prunedKeys, prunedRefreshTokens, prunedSessions }, 'pruned');
      })
      .catch((error: Error) => logger.error({ err: { message: error.message } }, 'maintenance failed'))
      .finally(() => (running = undefined));
  };
  run();
  const timer = setInterval(run, intervalSeconds * 1000);
  timer.unref();
  return {
    async stop(): Promise<void> {
      clearInterval(timer);
      await running;
    },
  };
}
