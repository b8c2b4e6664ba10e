import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { errorCode } from '../../files.js';

/**
 * A backup is written as `<file>.partial-<pid>-<random>` and renamed to `<file>` once whole and on
 * disk: one killed halfway (a cron job's timeout, a reboot) leaves that file, and SQLite's
 * `-journal` beside it, never a file under the name asked for that is not a whole copy.
 */
export const partialBackupName = (file: string) => `${file}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;

const PARTIAL_BACKUP = /\.partial-(\d+)-[0-9a-f]{8}(-journal)?$/;

/** Whether process `pid` runs here (one of another user's counts: the signal is refused, not unknown). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

/**
 * The files killed backups left in `folder`: partial ones whose process no longer runs. Named to the
 * operator, never deleted: a backup of another host or container may be writing into the same folder.
 */
export function killedBackupFiles(folder: string): Array<{ name: string; bytes: number }> {
  const left: Array<{ name: string; bytes: number }> = [];
  for (const name of fs.readdirSync(folder)) {
    const pid = PARTIAL_BACKUP.exec(name)?.[1];
    if (pid === undefined || running(Number(pid))) continue;
    try {
      left.push({ name, bytes: fs.statSync(path.join(folder, name)).size });
    } catch {
      // gone meanwhile
    }
  }
  return left.sort((a, b) => a.name.localeCompare(b.name));
}
