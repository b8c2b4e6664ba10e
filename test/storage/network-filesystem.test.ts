import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { networkFilesystemOf, warnIfNetworkFilesystem } from '../../src/storage/sqlite/network-filesystem.js';
import { tempDir } from '../helpers.js';

describe('a database on a network filesystem', () => {
  it('is told apart by the statfs type of its folder, and the start warns of it; a local disk gets no warning', () => {
    // This machine has no network filesystem to mount: the statfs answers are given for those.
    const local = path.join(tempDir(), 'tokenmint.db');
    expect(networkFilesystemOf(local)).toBeUndefined(); // the real statfs of a local folder
    expect(networkFilesystemOf('/nowhere/at/all/tokenmint.db')).toBeUndefined(); // a folder it cannot look at
    const asked: string[] = [];
    const nfs = (folder: string) => (asked.push(folder), { type: 0x6969 });
    expect(networkFilesystemOf('/mnt/share/tokenmint.db', nfs)).toBe('NFS');
    expect(asked).toEqual(['/mnt/share']);
    expect(networkFilesystemOf('/mnt/c/tokenmint.db', () => ({ type: 0x01021997 }))).toBe('9P');
    expect(networkFilesystemOf('/data/tokenmint.db', () => ({ type: 0x65735546 }))).toBeUndefined(); // FUSE: as often local

    const lines: string[] = [];
    const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
    warnIfNetworkFilesystem(local, logger);
    expect(lines).toEqual([]);
    warnIfNetworkFilesystem('/mnt/share/tokenmint.db', logger, nfs);
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toMatchObject([
      { level: 40, database: '/mnt/share/tokenmint.db', filesystem: 'NFS', msg: expect.stringMatching(/^the database is on a network filesystem \(NFS\): keep it on a local disk/) },
    ]);
  });
});
