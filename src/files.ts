import fs from 'node:fs';
import path from 'node:path';

/**
 * Creates `file` empty, readable and writable by this user only, and the folders it needs (0700).
 * Returns false, changing nothing, when it already exists.
 */
export function createPrivateFile(file: string): boolean {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    fs.writeFileSync(file, '', { flag: 'wx', mode: 0o600 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
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
