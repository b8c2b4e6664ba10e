import type { Database } from 'better-sqlite3';
import { BUSY_RETRY_MS, isBusy, pauseAfterBusy } from './busy-retry.js';

/**
 * Group commit, one per connection: the writes that arrive during one event-loop turn run in one
 * BEGIN IMMEDIATE transaction, so they share one commit — one append to the WAL of the pages they
 * touch — instead of paying one each (the commit is most of a renew's SQLite cost). Each write runs
 * in its own SAVEPOINT: a write that throws is rolled back alone and rejects alone; the others commit
 * (unless the error made SQLite roll back the whole transaction: then every write of the batch rejects).
 *
 * While another process holds the write lock (SQLITE_BUSY), nothing of the batch is written and it
 * waits without blocking the event loop — next turn, then backing off to a few ms — taking in the
 * writes that arrive meanwhile; after `busyRetryMs` its writes reject with SQLITE_BUSY.
 *
 * Returns `commit(write)`: runs the synchronous `write` (its statements only) in the current batch
 * and resolves to its result once the batch has committed.
 */
export function groupCommit(db: Database, { busyRetryMs = BUSY_RETRY_MS } = {}) {
  type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };
  type Pending = { write: () => unknown; since: number; resolve: (r: unknown) => void; reject: (e: unknown) => void; outcome?: Outcome };
  let queue: Pending[] = [];
  let scheduled = false;
  let busyInARow = 0;

  // better-sqlite3 runs a transaction function called inside another transaction as a SAVEPOINT.
  const inSavepoint = db.transaction((write: () => unknown) => write());
  const runBatch = db.transaction((batch: Pending[]) => {
    for (const item of batch) {
      try {
        item.outcome = { ok: true, value: inSavepoint(item.write) };
      } catch (error) {
        // SQLITE_FULL, _IOERR or _NOMEM may roll back the whole transaction, not just the savepoint:
        // the writes before this one are gone, and the next would each commit on their own. So the
        // whole batch fails, and nothing of it is written.
        if (!db.inTransaction) throw error;
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

  return <Result>(write: () => Result): Promise<Result> =>
    new Promise((resolve, reject) => {
      queue.push({ write, resolve: resolve as (r: unknown) => void, reject, since: performance.now() });
      // The first write of a turn schedules the batch; writes of the same turn join it.
      if (!scheduled) schedule();
    });
}
