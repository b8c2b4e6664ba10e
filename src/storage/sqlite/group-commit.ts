import type { Database, Transaction } from 'better-sqlite3';
import { BUSY_RETRY_MS, isBusy, pauseAfterBusy } from './busy-retry.js';

/**
 * Group commit: the writes that arrive during one event-loop turn run in one BEGIN IMMEDIATE
 * transaction, so they share one commit — one append to the WAL of the pages they touch — instead
 * of paying one each (the commit is most of a renew's SQLite cost). Each write still runs as its own
 * better-sqlite3 transaction function, which inside the batch becomes a SAVEPOINT: a write that
 * throws is rolled back alone and rejects alone; the others commit.
 *
 * While another process holds the write lock (SQLITE_BUSY), nothing of the batch is written and it
 * waits without blocking the event loop — next turn, then backing off to a few ms — taking in the
 * writes that arrive meanwhile; after `busyRetryMs` its writes reject with SQLITE_BUSY.
 */
export function groupCommit<Args extends unknown[], Result>(db: Database, write: Transaction<(...args: Args) => Result>, { busyRetryMs = BUSY_RETRY_MS } = {}) {
  type Outcome = { ok: true; value: Result } | { ok: false; error: unknown };
  type Pending = { args: Args; since: number; resolve: (r: Result) => void; reject: (e: unknown) => void; outcome?: Outcome };
  let queue: Pending[] = [];
  let scheduled = false;
  let busyInARow = 0;

  const runBatch = db.transaction((batch: Pending[]) => {
    for (const item of batch) {
      try {
        item.outcome = { ok: true, value: write(...item.args) };
      } catch (error) {
        item.outcome = { ok: false, error };
      }
    }
  });

  // Normally the next turn; after a busy batch, retryBusy's pause.
  const schedule = () => {
    scheduled = true;
    void pauseAfterBusy(busyInARow).then(flush);
  };

  function flush() {
    scheduled = false;
    const batch = queue;
    try {
      runBatch.immediate(batch);
    } catch (error) {
      if (isBusy(error) && performance.now() - batch[0]!.since < busyRetryMs) {
        busyInARow++;
        schedule(); // the batch stays queued; writes that arrive meanwhile join it
        return;
      }
      queue = [];
      busyInARow = 0;
      for (const item of batch) item.reject(error);
      return;
    }
    queue = [];
    busyInARow = 0;
    for (const { outcome, resolve, reject } of batch) {
      if (outcome!.ok) resolve(outcome!.value);
      else reject(outcome!.error);
    }
  }

  return (...args: Args): Promise<Result> =>
    new Promise((resolve, reject) => {
      queue.push({ args, resolve, reject, since: performance.now() });
      // The first write of a turn schedules the batch; writes of the same turn join it.
      if (!scheduled) schedule();
    });
}
