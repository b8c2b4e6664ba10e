import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../log.js';

/**
 * statfs types (linux/magic.h) of the network filesystems whose locks SQLite cannot rely on, and on
 * which its WAL does not work from more than one machine. FUSE is left out: it is as often local
 * (fuse-overlayfs in rootless containers) as remote (sshfs).
 */
const NETWORK_FILESYSTEMS = new Map<number, string>([
  [0x6969, 'NFS'], // EFS and Filestore too
  [0x517b, 'SMB'],
  [0xff534d42, 'CIFS'],
  [0xfe534d42, 'SMB2'],
  [0x00c36400, 'Ceph'],
  [0x01021997, '9P'], // WSL 2's /mnt/c
  [0x5346414f, 'AFS'],
  [0x0bd00bd0, 'Lustre'],
  [0x47504653, 'GPFS'],
]);

/** The network filesystem that holds the folder of `file`, by name; undefined for a local one, or one it cannot look at. */
export function networkFilesystemOf(file: string, statfs: (folder: string) => { type: number } = fs.statfsSync): string | undefined {
  try {
    return NETWORK_FILESYSTEMS.get(statfs(path.dirname(file)).type);
  } catch {
    return undefined;
  }
}

/** Logs a warning at start when the database is on a network filesystem (README, Operations › One machine). */
export function warnIfNetworkFilesystem(file: string, logger: Logger, statfs?: (folder: string) => { type: number }): void {
  const filesystem = networkFilesystemOf(file, statfs);
  if (filesystem === undefined) return;
  logger.warn({ database: file, filesystem }, `the database is on a network filesystem (${filesystem}): keep it on a local disk. SQLite's locks are not reliable there, and a second machine opening it would corrupt it`);
}
