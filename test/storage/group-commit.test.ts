import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { groupCommit } from '../../src/storage/sqlite/group-commit.js';
import { onCleanup, tempDir } from '../helpers.js';

/** Two connections to one real file: the writer under test, and an outsider that sees only commits. */
function setup() {
  const file = path.join(tempDir(), 'group.db');
  const writer = new Database(file);
  writer.pragma('journal_mode = WAL');
  writer.pragma('busy_timeout = 0');
  writer.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)');
  const outsider = new Database(file);
  outsider.pragma('busy_timeout = 0');
  onCleanup(() => (writer.close(), outsider.close()));
  const committed = () => (outsider.prepare('SELECT v FROM t ORDER BY id').all() as Array<{ v: string }>).map((r) => r.v);
  return { writer, outsider, committed };
}

describe('group commit', () => {
  it('runs the writes of one turn in one transaction: none is visible to another connection before all are', async () => {
    const { writer, committed } = setup();
    const seenByOutsider: string[][] = [];
    const commit = groupCommit(writer);
    const write = (v: string) =>
      commit(() => {
        writer.prepare('INSERT INTO t (v) VALUES (?)').run(v);
        seenByOutsider.push(committed());
        return v.toUpperCase();
      });
    const answers = await Promise.all(['a', 'b', 'c'].map((v) => write(v)));
    expect(answers).toEqual(['A', 'B', 'C']);
    expect(seenByOutsider).toEqual([[], [], []]); // one commit for the three
    expect(committed()).toEqual(['a', 'b', 'c']);

    // A later turn is a new batch.
    await write('d');
    expect(committed()).toEqual(['a', 'b', 'c', 'd']);
  });

  it('a write that throws is rolled back and rejects alone; the rest of its batch commits', async () => {
    const { writer, committed } = setup();
    const commit = groupCommit(writer);
    const write = (v: string) =>
      commit(() => {
        writer.prepare('INSERT INTO t (v) VALUES (?)').run(v);
        writer.prepare('INSERT INTO t (v) VALUES (?)').run(`${v}-2`); // the second half of this write
        return v;
      });
    const results = await Promise.allSettled([write('a'), write('a'), write('b')]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/UNIQUE/);
    // Nothing of the failed write is left half-done: its first insert went with its savepoint.
    expect(committed()).toEqual(['a', 'a-2', 'b', 'b-2']);
  });

  it('a write that makes SQLite roll back the whole transaction (database full): every write of the batch rejects, and none commits on its own', async () => {
    const { writer, committed } = setup();
    writer.prepare('INSERT INTO t (v) VALUES (?)').run('seed');
    // A full disk, as SQLite sees it: no page can be added to the file.
    writer.pragma(`max_page_count = ${writer.pragma('page_count', { simple: true })}`);
    const commit = groupCommit(writer);
    const write = (v: string) => commit(() => writer.prepare('INSERT INTO t (v) VALUES (?)').run(v).changes);
    // The middle write needs new pages; SQLITE_FULL then rolls back the transaction, not just its savepoint.
    const results = await Promise.allSettled([write('a'), write('x'.repeat(20_000)), write('b')]);
    expect(results.map((r) => r.status === 'rejected' && (r.reason as { code: string }).code)).toEqual(['SQLITE_FULL', 'SQLITE_FULL', 'SQLITE_FULL']);
    expect(committed()).toEqual(['seed']); // 'b' did not commit by itself after the rollback
    expect(writer.inTransaction).toBe(false);
    // What fits still goes through, in the next batch.
    expect(await Promise.all([write('a'), write('b')])).toEqual([1, 1]);
    expect(committed()).toEqual(['seed', 'a', 'b']);
  });

  it('while another connection holds the write lock the batch waits, without blocking the event loop, then commits', async () => {
    const { writer, outsider, committed } = setup();
    const commit = groupCommit(writer);
    const write = (v: string) => commit(() => writer.prepare('INSERT INTO t (v) VALUES (?)').run(v).changes);
    outsider.exec('BEGIN IMMEDIATE');
    const pending = Promise.all([write('a'), write('b')]);
    let turns = 0;
    const started = Date.now();
    while (Date.now() - started < 100) await new Promise((resolve) => setImmediate(() => resolve(turns++)));
    expect(turns).toBeGreaterThan(10); // the event loop kept turning
    expect(committed()).toEqual([]);
    const late = write('c'); // arrives while the batch waits, and joins it
    outsider.exec('COMMIT');
    expect(await pending).toEqual([1, 1]);
    expect(await late).toBe(1);
    expect(committed()).toEqual(['a', 'b', 'c']);
  });

  it('a lock held longer than busyRetryMs: every write of the batch rejects with SQLITE_BUSY and nothing is written', async () => {
    const { writer, outsider, committed } = setup();
    const commit = groupCommit(writer, { busyRetryMs: 100 });
    const write = (v: string) => commit(() => writer.prepare('INSERT INTO t (v) VALUES (?)').run(v).changes);
    outsider.exec('BEGIN IMMEDIATE');
    const results = await Promise.allSettled([write('a'), write('b')]);
    expect(results.map((r) => r.status === 'rejected' && (r.reason as { code: string }).code)).toEqual(['SQLITE_BUSY', 'SQLITE_BUSY']);
    outsider.exec('COMMIT');
    expect(committed()).toEqual([]);
    expect(await write('c')).toBe(1); // and the next batch goes through
    expect(committed()).toEqual(['c']);
  });
});
