import { createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { unseal, masterKeyFromBytes } from '../../src/keyring/master-key.js';
import { openSqlite } from '../../src/storage/sqlite/open.js';
import { createSqliteRepository } from '../../src/storage/sqlite/sqlite-repository.js';
import { client, harness, onCleanup, tempDir, verifyIndependently, type Pair } from '../helpers.js';
import { repositoryContract } from './repository-contract.js';

repositoryContract('sqlite', async () => {
  const repo = createSqliteRepository(openSqlite(path.join(tempDir(), 'contract.db')));
  onCleanup(() => repo.close());
  return repo;
});

describe('SQLite storage', () => {
  it('builds the schema from migrations/ in WAL mode', async () => {
    const db = openSqlite(path.join(tempDir(), 'nested', 'folder', 'x.db'));
    onCleanup(() => db.$client.close());
    expect(db.$client.pragma('journal_mode', { simple: true })).toBe('wal');
    const tables = db.$client.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
    expect(tables).toEqual(expect.arrayContaining(['__drizzle_migrations', 'apps', 'refresh_tokens', 'sessions', 'signing_keys']));
  });

  it('never holds a private key in clear: the file has only sealed envelopes', async () => {
    const h = await harness();
    await h.createApp('acme');
    await h.tm.keyring.rotate('acme');
    const keys = await h.tm.repo.listKeys('acme');
    expect(keys).toHaveLength(3);
    const master = masterKeyFromBytes(Buffer.from(h.env.TOKENMINT_MASTER_KEY!, 'base64'));
    const onDisk = Buffer.concat(
      ['tokenmint.db', 'tokenmint.db-wal'].map((f) => path.join(h.dir, f)).filter(fs.existsSync).map((f) => fs.readFileSync(f)),
    );
    for (const k of keys) {
      expect(k.sealedPrivateKey).toMatch(/^tm1\.[0-9a-f]{16}\./);
      const pem = unseal(master, k.sealedPrivateKey!, `tokenmint:signing-key:acme:${k.kid}`);
      const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
      const { d } = createPrivateKey(pem).export({ format: 'jwk' });
      // Neither the PEM text, nor the DER, nor the raw scalar d in any encoding.
      for (const secret of [pem.split('\n')[1]!, der, Buffer.from(d!, 'base64url'), d!]) expect(onDisk.includes(secret)).toBe(false);
    }
  });

  it('a sealed key does not open under another master key or on another row', async () => {
    const h = await harness();
    await h.createApp('acme');
    const [k] = await h.tm.repo.listKeys('acme');
    const master = masterKeyFromBytes(Buffer.from(h.env.TOKENMINT_MASTER_KEY!, 'base64'));
    expect(() => unseal(masterKeyFromBytes(Buffer.alloc(32, 7)), k!.sealedPrivateKey!, `tokenmint:signing-key:acme:${k!.kid}`)).toThrow(/master key/);
    expect(() => unseal(master, k!.sealedPrivateKey!, 'tokenmint:signing-key:other:X')).toThrow();
  });

  it('keeps everything across a restart: apps, keys, sessions', async () => {
    const dir = tempDir();
    const env = { DATABASE_URL: path.join(dir, 'db.sqlite'), TOKENMINT_MASTER_KEY: Buffer.alloc(32, 1).toString('base64') };
    const first = await harness({ env });
    const { appKey } = await first.createApp('acme', { refreshNbfSeconds: 0 });
    const pair = (await (await first.post('/app/acme/issue', { sub: 'u', ...client }, appKey)).json()) as Pair;
    await first.tm.close();

    const second = await harness({ env, clock: first.clock });
    const res = await second.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, appKey);
    expect(res.status).toBe(200);
    const renewed = (await res.json()) as Pair;
    expect(verifyIndependently(renewed.auth_token, renewed.public_key).payload.sub).toBe('u');
  });
});
