import fs from 'node:fs';
import { errorCode } from '../../files.js';
import type { Logger } from '../../log.js';

/** How a database file stopped being the one a process opened. */
export type DatabaseFileChange = 'deleted' | 'replaced';

const CHECK_INTERVAL_MS = 1000;

/** A file's identity whatever its name: its device and inode. */
const identity = (stat: fs.Stats) => `${stat.dev}:${stat.ino}`;

const isMissing = (error: unknown) => ['ENOENT', 'ENOTDIR'].includes(errorCode(error));

/**
 * Stops the server when the file at `file` is no longer the one there at the call — deleted (or its
 * folder moved), or replaced by another file (a backup restored over it) — checking every second:
 * says why on stderr and in the log, then calls `stop`. SQLite does not notice either: its open
 * connections go on reading and writing the file they opened, which no process opening the path
 * sees any more (CLI changes stop reaching the server, and what the server writes is lost with it).
 * Returns what ends the watch (a shutdown for another reason: its files may go next).
 */
export function watchDatabaseFile(file: string, logger: Logger, stop: (change: DatabaseFileChange) => void): () => void {
  const opened = identity(fs.statSync(file));
  let checking = false;
  const timer = setInterval(() => {
    if (checking) return; // a slow disk: one stat at a time
    checking = true;
    void fs.promises.stat(file).then(
      (stat) => {
        checking = false;
        if (identity(stat) !== opened) found('replaced');
      },
      (error: unknown) => {
        checking = false;
        // Anything but a missing file (EACCES, EIO) says nothing of which file is there: look again next time.
        if (isMissing(error)) found('deleted');
      },
    );
  }, CHECK_INTERVAL_MS);
  timer.unref();
  let watching = true;
  const end = () => {
    watching = false;
    clearInterval(timer);
  };
  const found = (change: DatabaseFileChange) => {
    if (!watching) return; // a stat that was under way when the watch ended
    end();
    process.stderr.write(`tokenmint: ${message(file, change)}\n`);
    logger.error({ database: file, change }, 'database file gone from under the server');
    stop(change);
  };
  return end;
}

/** What the operator reads: what happened, and what to do. */
function message(file: string, change: DatabaseFileChange): string {
  const stopping = 'stopping: it would go on with the file it opened, which no other process sees (changes made with the CLI would not reach it, and what it writes would be lost)';
  return change === 'deleted'
    ? `the database file ${file} was deleted (or its folder moved) while tokenmint had it open; ${stopping}. To restore a backup, see README › Backups.`
    : `the database file ${file} was replaced by another file while tokenmint had it open; ${stopping}. The ${file}-wal and -shm files beside it belong to the file that was there before, and the next process to open the path applies them to the new one: with every tokenmint process stopped, delete them, copy the file you meant in again, then start (README › Backups).`;
}
