import type { Database, Transaction } from 'better-sqlite3';

/**
 * Group commit: the writes that arrive during one event-loop turn run in one BEGIN IMMEDIATE
 * transaction, so they share one commit — one append to the WAL of the pages they touch — instead
 * of paying one each (the commit is most of a renew's SQLite cost). Each write still runs as its own
 * better-sqlite3 transaction function, which inside the batch becomes a SAVEPOINT: a write that
 * throws is rolled back alone and rejects alone; the others commit. If the batch itself cannot
 * start or commit (SQLITE_BUSY: another process holds the lock), nothing of it is written and every
 * write rejects with that error, to be retried by the caller.
 */
export function groupCommit<Args extends unknown[], Result>(db: Database, write: Transaction<(...args: Args) => Result>) {
  type Pending = { args: Args; resolve: (r: Result) => void; reject: (e: unknown) => void; outcome?: { ok: true; value: Result } | { ok: false; error: unknown } };
  let queue: Pending[] = [];

  const runBatch = db.transaction((batch: Pending[]) => {
    for (const item of batch) {
      try {
        item.outcome = { ok: true, value: write(...item.args) };
      } catch (error) {
        item.outcome = { ok: false, error };
      }
    }
  });

  function flush() {
    const batch = queue;
    queue = [];
    try {
      runBatch.immediate(batch);
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    for (const { outcome, resolve, reject } of batch) {
      if (outcome!.ok) resolve(outcome!.value);
      else reject(outcome!.error);
    }
  }

  return (...args: Args): Promise<Result> =>
    new Promise((resolve, reject) => {
      // The first write of a turn schedules the batch; writes of the same turn join it.
      if (queue.length === 0) setImmediate(flush);
      queue.push({ args, resolve, reject });
    });
}
