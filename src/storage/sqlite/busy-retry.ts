import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { errorCode } from '../../files.js';

/** How long an operation keeps retrying while another connection holds the write lock. */
export const BUSY_RETRY_MS = 5000;

export const isBusy = (error: unknown) => errorCode(error).startsWith('SQLITE_BUSY');

/** The pause before try `attempt` + 1: commits take tens of microseconds, so the next turn, then a few ms. */
export const pauseAfterBusy = (attempt: number): Promise<unknown> => (attempt < 20 ? nextTurn() : sleep(Math.min(10, attempt - 19)));

/**
 * Runs `operation`, retrying it while SQLite answers SQLITE_BUSY, for up to `BUSY_RETRY_MS`.
 *
 * better-sqlite3 is synchronous, so SQLite's own busy_timeout would wait by sleeping the whole event
 * loop (1 ms, 2 ms, 5 ms, ...) while another process — a second worker, the CLI — commits. Waiting
 * here instead lets this process serve other requests meanwhile. A busy error means nothing was
 * written (a transaction that fails is rolled back), so running the operation again is safe.
 */
export async function retryBusy<T>(operation: () => T | Promise<T>): Promise<T> {
  const deadline = performance.now() + BUSY_RETRY_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (!isBusy(error) || performance.now() >= deadline) throw error;
      await pauseAfterBusy(attempt);
    }
  }
}

/** Every method of `target` (a repository) run through `retryBusy`. */
export function withBusyRetry<T extends object>(target: T): T {
  return Object.fromEntries(
    Object.entries(target).map(([name, method]) => [name, (...args: unknown[]) => retryBusy(() => (method as (...a: unknown[]) => unknown)(...args))]),
  ) as T;
}
