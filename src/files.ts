import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from './config.js';

/**
 * Creates `file` empty, readable and writable by this user only, and the folders it needs (0700).
 * Returns false, changing nothing, when it already exists.
 */
export function createPrivateFile(file: string): boolean {
  makePrivateFolder(path.dirname(file));
  try {
    fs.writeFileSync(file, '', { flag: 'wx', mode: 0o600 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * `mkdir -p` with mode 0700, one folder at a time: Node 20's recursive mkdir reports a read-only
 * file system as ENOENT ("no such file or directory"), which would send the operator looking for a
 * missing folder.
 */
export function makePrivateFolder(folder: string): void {
  if (fs.existsSync(folder)) return;
  makePrivateFolder(path.dirname(folder));
  try {
    fs.mkdirSync(folder, { mode: 0o700 });
  } catch (error) {
    if (errorCode(error) !== 'EEXIST') throw error; // made meanwhile by another process
  }
}

/** fsync of a file or a folder. */
export function syncToDisk(target: string): void {
  const fd = fs.openSync(target, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The code of a Node system error (ENOENT, …) or a SQLite error (SQLITE_FULL, …); '' for any other. */
export const errorCode = (error: unknown): string => {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' ? code : '';
};

/** An error of a file this process may not read or write (Node's, or SQLite's on opening). */
export const isAccessDenied = (error: unknown): boolean => /^(EACCES|EPERM|SQLITE_CANTOPEN|SQLITE_READONLY)/.test(errorCode(error));

/** Room left below which a failed write is put down to a full disk. */
const NEARLY_FULL_BYTES = 1024 * 1024;

/** An error a full disk may cause: ENOSPC, SQLITE_FULL, or an I/O error (SQLite's when it cannot size its -shm file). */
const mayBeFullDisk = (error: unknown): boolean => /^(ENOSPC|SQLITE_FULL|SQLITE_IOERR)/.test(errorCode(error));

/** For an error a full disk may cause: how little room the disk holding `file` has left, when that is the cause. */
export function fullDiskHint(file: string, error: unknown): string | undefined {
  if (!mayBeFullDisk(error)) return undefined;
  const folder = path.dirname(file);
  let free: number;
  try {
    const { bavail, bsize } = fs.statfsSync(folder);
    free = bavail * bsize;
  } catch {
    return undefined;
  }
  return free < NEARLY_FULL_BYTES ? `the disk holding ${folder} has ${Math.floor(free / 1024)} KB free: make room on it` : undefined;
}

/**
 * For a message about `file` that this process may not use: which user owns it (or its folder, when
 * the file cannot even be looked at) against the user tokenmint runs as. The usual cause is a CLI
 * run as one user (root, with sudo) and a server as another.
 */
export function accessHint(file: string): string {
  const uid = process.getuid?.();
  for (const target of uid === undefined ? [] : [file, path.dirname(file)]) {
    let owner: number;
    try {
      owner = fs.statSync(target).uid;
    } catch {
      continue; // not there, or not ours to look at: try its folder
    }
    if (owner !== uid) {
      const name = userName();
      const me = name === undefined ? `uid ${uid}` : `${name} (uid ${uid})`;
      return `${target} belongs to uid ${owner}, and tokenmint runs as ${me}: run the server and the CLI as the same user, or give the files to this one (chown -R)`;
    }
  }
  return 'check its permissions and those of its folder';
}

/**
 * What to tell the operator of a write the database `file` refused for a reason outside tokenmint (a
 * full disk, an I/O error, a lock held past the 5 s wait, a read-only file); undefined for any other error.
 */
export function storageFailureMessage(file: string, error: unknown): string | undefined {
  const code = errorCode(error);
  if (!/^SQLITE_(FULL|IOERR|BUSY|READONLY)/.test(code)) return undefined;
  const hint = code.startsWith('SQLITE_BUSY')
    ? 'another process held its write lock for over 5 s (a backup, another long command, an sqlite3 shell with a transaction open)'
    : code.startsWith('SQLITE_READONLY')
      ? accessHint(file)
      : fullDiskHint(file, error);
  return `the database ${file} could not be written: ${(error as Error).message} (${code}); the transaction under way was rolled back${hint ? `; ${hint}` : ''}`;
}

/** A server start that a storage failure ended: the operator's sentence (a ConfigError); any other error as it is. */
export function startFailure(file: string, error: unknown): unknown {
  const message = storageFailureMessage(file, error);
  return message === undefined ? error : new ConfigError(`${message}. Start the server again once that is fixed`);
}

/** This process's user name, if the system has one for its uid. */
function userName(): string | undefined {
  try {
    return os.userInfo().username;
  } catch {
    return undefined; // a uid with no passwd entry (containers)
  }
}
