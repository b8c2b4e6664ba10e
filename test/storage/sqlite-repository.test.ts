import { createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.js';
import { openMasterKeyRing, unseal } from '../../src/keyring/master-key.js';
import { runCli } from '../../src/cli/run.js';
import { openSqlite } from '../../src/storage/sqlite/open.js';
import { createSqliteRepository } from '../../src/storage/sqlite/sqlite-repository.js';
import { client, harness, onCleanup, tempDir, verifyIndependently, type Pair } from '../helpers.js';
import { appRecord, child, key, NOW, repositoryContract, session, token } from './repository-contract.js';

repositoryContract('sqlite', async () => {
  const repo = createSqliteRepository(openSqlite(path.join(tempDir(), 'contract.db')));
  onCleanup(() => repo.close());
  return repo;
});

/** A folder of the migrations before number `idx`, as a file made by an older version went through them. */
function migrationsBefore(idx: number): string {
  const migrations = fileURLToPath(new URL('../../migrations', import.meta.url));
  const before = path.join(tempDir(), 'migrations');
  fs.mkdirSync(path.join(before, 'meta'), { recursive: true });
  const journal = JSON.parse(fs.readFileSync(path.join(migrations, 'meta/_journal.json'), 'utf8')) as { entries: Array<{ idx: number; tag: string }> };
  journal.entries = journal.entries.filter((e) => e.idx < idx);
  fs.writeFileSync(path.join(before, 'meta/_journal.json'), JSON.stringify(journal));
  for (const { tag } of journal.entries) fs.copyFileSync(path.join(migrations, `${tag}.sql`), path.join(before, `${tag}.sql`));
  return before;
}

/** A repository on a new file with apps acme and other, and an insert of session rows, for thousands at once. */
async function withSessionRows() {
  const db = openSqlite(path.join(tempDir(), 'sessions.db'));
  const repo = createSqliteRepository(db);
  onCleanup(() => repo.close());
  for (const appId of ['acme', 'other']) await repo.createApp(appRecord(appId), [key(appId, 'current')]);
  const add = db.$client.prepare('INSERT INTO sessions (session_id, app_id, sub, created_at, expires_at, revoked_at, revoke_reason) VALUES (?, ?, ?, ?, ?, ?, ?)');
  return { db, repo, add };
}

describe('SQLite storage', () => {
  it('builds the schema from migrations/ in WAL mode, in files of its user\'s alone', async () => {
    const dir = tempDir();
    const db = openSqlite(path.join(dir, 'nested', 'folder', 'x.db'));
    onCleanup(() => db.$client.close());
    expect(db.$client.pragma('journal_mode', { simple: true })).toBe('wal');
    for (const folder of ['nested', 'nested/folder']) expect(fs.statSync(path.join(dir, folder)).mode & 0o777).toBe(0o700);
    for (const file of ['x.db', 'x.db-wal', 'x.db-shm']) expect(fs.statSync(path.join(dir, 'nested/folder', file)).mode & 0o777).toBe(0o600);
    const tables = db.$client.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
    expect(tables).toEqual(expect.arrayContaining(['__drizzle_migrations', 'apps', 'refresh_tokens', 'sessions', 'signing_keys']));
  });

  it('with mustExist (a cluster\'s worker), a missing file is an error that names it, and nothing is made in its place', () => {
    const dir = tempDir();
    const file = path.join(dir, 'gone', 'x.db');
    const refusal = new ConfigError(`cannot open the database ${file}: no such file; a worker opens the file its cluster's primary made, and makes no other`);
    expect(() => openSqlite(file, { mustExist: true })).toThrow(refusal);
    expect(fs.readdirSync(dir)).toEqual([]);
    fs.mkdirSync(path.dirname(file));
    expect(() => openSqlite(file, { mustExist: true })).toThrow(refusal);
    expect(fs.readdirSync(path.dirname(file))).toEqual([]);
    openSqlite(file).$client.close(); // made by whoever may make it (the primary)...
    const db = openSqlite(file, { mustExist: true }); // ...and then opened
    onCleanup(() => db.$client.close());
    expect(db.$client.pragma('journal_mode', { simple: true })).toBe('wal');
  });

  it('refuses a file a newer version has migrated, with a sentence, and leaves it as it was; the CLI says so and exits 1', async () => {
    const h = await harness();
    const acme = await h.createApp('acme');
    // A newer version: every migration of this one, and one more after them.
    const migrations = fileURLToPath(new URL('../../migrations', import.meta.url));
    const newer = path.join(tempDir(), 'migrations');
    fs.cpSync(migrations, newer, { recursive: true });
    const journal = JSON.parse(fs.readFileSync(path.join(newer, 'meta/_journal.json'), 'utf8')) as { entries: Array<{ idx: number; version: string; when: number; tag: string; breakpoints: boolean }> };
    const last = journal.entries.at(-1)!;
    const when = last.when + 86_400_000;
    journal.entries.push({ ...last, idx: last.idx + 1, when, tag: '0010_from_the_future' });
    fs.writeFileSync(path.join(newer, 'meta/_journal.json'), JSON.stringify(journal));
    fs.writeFileSync(path.join(newer, '0010_from_the_future.sql'), 'ALTER TABLE `sessions` ADD `device_name` text NOT NULL DEFAULT \'\';');
    const file = h.config.databasePath;
    const other = new Database(file);
    migrate(drizzle({ client: other }), { migrationsFolder: newer });
    const applied = () => other.prepare('SELECT count(*) FROM __drizzle_migrations').pluck().get();
    const before = applied();

    const sentence = `cannot open the database ${file}: a newer tokenmint has migrated it (its last migration dates from ${new Date(when).toISOString()}, this version's from ${new Date(last.when).toISOString()}), and this version cannot tell what it changed: run that version or a newer one, or go back to a backup taken before the upgrade`;
    expect(() => openSqlite(file)).toThrow(new ConfigError(sentence));
    expect(() => openSqlite(file, { mustExist: true })).toThrow(new ConfigError(sentence));
    expect(applied()).toBe(before);
    let stderr = '';
    const code = await runCli(['app', 'list'], { stdout: () => {}, stderr: (t) => (stderr += t), env: h.env, cwd: h.dir, clock: h.clock });
    expect(code).toBe(1);
    expect(stderr).toContain(`tokenmint: ${sentence}\n`);
    // The process that had it open before (this harness, as a server running through the upgrade) goes on.
    expect((await h.post('/app/acme/issue', { sub: 'u', ...client }, acme.appKey)).status).toBe(200);
    other.close();
  });

  it('upgrades a file of the schema before migration 0004: every refresh token kept, used_at now the child\'s issued_at, no index or foreign key on the session', async () => {
    // The migrations as they were before 0004, applied to a new file that then gets a session.
    const before = migrationsBefore(4);
    const file = path.join(tempDir(), 'old.db');
    const old = new Database(file);
    old.pragma('foreign_keys = ON');
    migrate(drizzle({ client: old }), { migrationsFolder: before });
    // J1 was renewed into J2 at 5000 ms; J3's parent has been pruned.
    old.exec(`INSERT INTO apps VALUES ('acme', 'h', NULL, NULL, 'web', 3600, 604800, 0, 2592000, 10, 2592000, 0, 1, 1);
      INSERT INTO sessions VALUES ('S1', 'acme', 'u', NULL, 1, 9999999999999, NULL, NULL);
      INSERT INTO refresh_tokens VALUES ('J1', 'S1', NULL, 1, 1, 9999999999, '203.0.113.7', 'ua', 5000, X'01'),
                                        ('J2', 'S1', 'J1', 5, 5, 9999999999, '203.0.113.7', 'ua', NULL, X'02'),
                                        ('J3', 'S1', 'J0', 3, 3, 9999999999, '203.0.113.7', 'ua', NULL, X'03');`);
    const rows = old.prepare('SELECT * FROM refresh_tokens ORDER BY jid').all() as Array<Record<string, unknown>>;
    expect(old.prepare('PRAGMA foreign_key_list(refresh_tokens)').all()).toHaveLength(1);
    old.close();

    const db = openSqlite(file);
    onCleanup(() => db.$client.close());
    const sqlite = db.$client;
    const issuedAt = [1000, 5000, 3000];
    expect(sqlite.prepare('SELECT * FROM refresh_tokens ORDER BY jid').all()).toEqual(rows.map(({ used_at: _, ...row }, i) => ({ ...row, issued_at: issuedAt[i] })));
    expect(sqlite.prepare('PRAGMA index_list(refresh_tokens)').all().map((i) => (i as { name: string }).name).sort()).toEqual(['refresh_tokens_exp_idx', 'refresh_tokens_parent_jid_unique', 'sqlite_autoindex_refresh_tokens_1']);
    expect(sqlite.prepare('PRAGMA foreign_key_list(refresh_tokens)').all()).toEqual([]);
    expect(sqlite.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(sqlite.pragma('foreign_key_check')).toEqual([]);
    // The unique parent still refuses a fork.
    expect(() => sqlite.exec(`INSERT INTO refresh_tokens VALUES ('J4', 'S1', 'J1', 3, 3, 9999999999, 'ip', 'ua', 3000, NULL)`)).toThrow(/UNIQUE/);
    // J1 reads as used, at the time its child was issued; J2 as unused.
    const repo = createSqliteRepository(db);
    expect(await repo.findRefreshToken('J1')).toMatchObject({ token: { jid: 'J1', issuedAt: 1000 }, session: { sessionId: 'S1', sub: 'u' }, child: { jid: 'J2', issuedAt: 5000 } });
    expect(await repo.findRefreshToken('J2')).toMatchObject({ token: { jid: 'J2', parentJid: 'J1', sessionId: 'S1' }, child: null });
  });

  it('upgrades a file from before migrations 0009 and 0010: its sessions list with no login client and no issue key; a renew never reads either', async () => {
    const before = migrationsBefore(9);
    const file = path.join(tempDir(), 'old.db');
    const old = new Database(file);
    migrate(drizzle({ client: old }), { migrationsFolder: before });
    old.exec(`INSERT INTO apps (app_id, app_key_hash, audience, access_ttl_seconds, refresh_ttl_seconds, refresh_nbf_seconds, session_ttl_seconds, reuse_grace_seconds, rotate_every_seconds, created_at, updated_at)
        VALUES ('acme', 'h', 'web', 3600, 604800, 0, 2592000, 10, 2592000, 1, 1);
      INSERT INTO sessions VALUES ('S1', 'acme', 'u', NULL, 1, 9999999999999, NULL, NULL);
      INSERT INTO refresh_tokens (jid, session_id, iat, nbf, exp, ip, useragent, issued_at) VALUES ('J1', 'S1', 1, 1, 9999999999, '203.0.113.7', 'ua', 1000);`);
    old.close();

    const db = openSqlite(file);
    onCleanup(() => db.$client.close());
    const repo = createSqliteRepository(db);
    expect(await repo.listSessions('acme', 'u')).toEqual([expect.objectContaining({ sessionId: 'S1', ip: null, useragent: null })]);
    const s = { ...session('acme', 'u'), createdAt: 2 };
    await repo.createSession(s, { ...token(s), ip: '198.51.100.1', useragent: 'new' });
    expect((await repo.listSessions('acme', 'u')).map((l) => [l.sessionId, l.ip, l.useragent])).toEqual([[s.sessionId, '198.51.100.1', 'new'], ['S1', null, null]]);
    const found = await repo.findRefreshToken('J1');
    expect(found?.session).toEqual({ sessionId: 'S1', appId: 'acme', sub: 'u', personal: null, createdAt: 1, expiresAt: 9999999999999, revokedAt: null, revokeReason: null });
  });

  it('never holds a private key in clear: the file has only sealed envelopes', async () => {
    const h = await harness();
    await h.createApp('acme');
    await h.tm.keyring.rotate('acme');
    const keys = await h.tm.repo.listKeys('acme');
    expect(keys).toHaveLength(3);
    const master = openMasterKeyRing({ base64: h.env.TOKENMINT_MASTER_KEY, file: '' });
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
    const master = openMasterKeyRing({ base64: h.env.TOKENMINT_MASTER_KEY, file: '' });
    expect(() => unseal(openMasterKeyRing({ base64: Buffer.alloc(32, 7).toString('base64'), file: '' }), k!.sealedPrivateKey!, `tokenmint:signing-key:acme:${k!.kid}`)).toThrow(/master key/);
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

  it('a full disk fails writes without writing: a renew that failed left its token unused, one that answered is stored', async () => {
    const file = path.join(tempDir(), 'full.db');
    const db = openSqlite(file);
    const repo = createSqliteRepository(db);
    onCleanup(() => repo.close());
    await repo.createApp(appRecord('acme'), [key('acme', 'current')]);
    const sessions = Array.from({ length: 20 }, () => session('acme'));
    const firsts = sessions.map((s) => token(s));
    for (const [i, s] of sessions.entries()) await repo.createSession(s, firsts[i]!);
    // SQLite's view of a full disk: no free page left, and none can be added to the file (per
    // connection: the repository's).
    db.$client.exec('VACUUM');
    db.$client.pragma(`max_page_count = ${db.$client.pragma('page_count', { simple: true })}`);
    // One batch: renews around an issue whose 4 KB `personal` needs an overflow page. SQLITE_FULL
    // there rolls back the whole transaction, not just the savepoint.
    const children = sessions.map((s, i) => child(s, firsts[i]!, 1000));
    const big = { ...session('acme'), personal: JSON.stringify({ bio: 'x'.repeat(4000) }) };
    const renew = (i: number) => repo.consumeRefreshToken(children[i]!);
    const results = await Promise.allSettled([...[...Array(10).keys()].map(renew), repo.createSession(big, token(big)), ...[...Array(10).keys()].map((i) => renew(10 + i))]);
    const renews = [...results.slice(0, 10), ...results.slice(11)];
    const outsider = new Database(file, { readonly: true });
    onCleanup(() => outsider.close());
    const stored = new Set(outsider.prepare('SELECT parent_jid FROM refresh_tokens WHERE parent_jid IS NOT NULL').pluck().all());
    expect(results[10]!.status).toBe('rejected');
    expect(outsider.prepare('SELECT count(*) FROM sessions WHERE session_id = ?').pluck().get(big.sessionId)).toBe(0);
    // Each renew answered if and only if it is stored: never refused yet written.
    expect(firsts.map((t) => stored.has(t.jid))).toEqual(renews.map((r) => r.status === 'fulfilled'));
    for (const r of renews) if (r.status === 'rejected') expect((r.reason as { code: string }).code).toBe('SQLITE_FULL');
    // With room again, every token a failure left unused renews (once).
    db.$client.pragma('max_page_count = 1073741823');
    const retried = await Promise.all(renews.map((r, i) => (r.status === 'rejected' ? renew(i) : true)));
    expect(retried).toEqual(Array(20).fill(true));
    expect(outsider.prepare('SELECT count(*) FROM refresh_tokens WHERE parent_jid IS NOT NULL').pluck().get()).toBe(20);
  });

  it('the kill switch ends the app\'s live sessions window by window: all of them across windows, and nothing else', async () => {
    const { db, repo, add } = await withSessionRows();
    // 12,000 sessions of acme among 6,000 of another app, in the order they started, with subjects
    // in no particular order: the rowids span four windows of 5,000.
    const kinds = ['live', 'live', 'other app', 'already revoked', 'expired', 'started after'] as const;
    db.$client.transaction(() => {
      for (let i = 0; i < 18_000; i++) {
        const kind = kinds[i % kinds.length]!;
        add.run(`S${i}`, kind === 'other app' ? 'other' : 'acme', `u${(i * 7919) % 1009}`, kind === 'started after' ? NOW + 1 : NOW - 1000,
          kind === 'expired' ? NOW : NOW + 3_600_000, kind === 'already revoked' ? NOW - 10 : null, kind === 'already revoked' ? 'client' : null);
      }
    })();

    expect(await repo.revokeSessions('acme', {}, 'admin-all', NOW)).toBe(6000);
    const outcome = db.$client
      .prepare("SELECT app_id AS app, revoke_reason AS reason, count(*) AS n FROM sessions GROUP BY app_id, revoke_reason, revoked_at ORDER BY app_id, revoke_reason")
      .all();
    expect(outcome).toEqual([
      { app: 'acme', reason: null, n: 6000 }, // expired, or started after the kill switch
      { app: 'acme', reason: 'admin-all', n: 6000 }, // the live ones, revoked at NOW
      { app: 'acme', reason: 'client', n: 3000 }, // keeps its first reason and time
      { app: 'other', reason: null, n: 3000 },
    ]);
    expect(db.$client.prepare("SELECT count(*) FROM sessions WHERE revoke_reason = 'admin-all' AND revoked_at <> ?").pluck().get(NOW)).toBe(0);
    expect(await repo.revokeSessions('acme', {}, 'admin-all', NOW)).toBe(0);
    expect(await repo.revokeSessions('nobody', {}, 'admin-all', NOW)).toBe(0);
  });

  it('a subject\'s sessions, when it has more than a window\'s worth, end window by window too: all of its live ones but the one kept, and nothing else', async () => {
    const { db, repo, add } = await withSessionRows();
    // 14,000 sessions of "robot" among other subjects' (a service account that logs in all day), and
    // robot's sessions of another app: the rowids span four windows of 5,000.
    const kinds = ['live', 'live', 'live', 'other subject', 'other app', 'already revoked', 'expired', 'started after'] as const;
    db.$client.transaction(() => {
      for (let i = 0; i < 16_000; i++) {
        const kind = kinds[i % kinds.length]!;
        add.run(`S${i}`, kind === 'other app' ? 'other' : 'acme', kind === 'other subject' ? `u${i}` : 'robot',
          kind === 'started after' ? NOW + 1 : NOW - 10_000 + Math.floor(i / 7), kind === 'expired' ? NOW : NOW + 3_600_000,
          kind === 'already revoked' ? NOW - 10 : null, kind === 'already revoked' ? 'client' : null);
      }
    })();

    expect(await repo.revokeSessions('acme', { sub: 'robot', exceptSessionId: 'S8' }, 'client', NOW)).toBe(5999);
    const outcome = db.$client
      .prepare("SELECT app_id AS app, sub = 'robot' AS robot, revoke_reason AS reason, revoked_at = ? AS now, count(*) AS n FROM sessions GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4")
      .all(NOW);
    expect(outcome).toEqual([
      { app: 'acme', robot: 0, reason: null, now: null, n: 2000 }, // other subjects
      { app: 'acme', robot: 1, reason: null, now: null, n: 4001 }, // expired, started after, and the one kept
      { app: 'acme', robot: 1, reason: 'client', now: 0, n: 2000 }, // already revoked: its first time kept
      { app: 'acme', robot: 1, reason: 'client', now: 1, n: 5999 },
      { app: 'other', robot: 1, reason: null, now: null, n: 2000 },
    ]);
    expect(db.$client.prepare('SELECT revoked_at FROM sessions WHERE session_id = ?').pluck().get('S8')).toBeNull();
    expect(await repo.revokeSessions('acme', { sub: 'robot' }, 'admin', NOW)).toBe(1);
  });

  it('syncs admin changes and revocations to disk before they resolve (synchronous=FULL); issues and renews commit at NORMAL', async () => {
    const db = openSqlite(path.join(tempDir(), 'sync.db'));
    const repo = createSqliteRepository(db);
    onCleanup(() => repo.close());
    // Temp triggers on the repository's own connection record the level each write ran at (1 NORMAL, 2 FULL).
    const sqlite = db.$client;
    sqlite.exec('CREATE TEMP TABLE seen (level INTEGER)');
    for (const table of ['apps', 'signing_keys', 'sessions', 'refresh_tokens']) {
      for (const op of ['INSERT', 'UPDATE']) {
        sqlite.exec(`CREATE TEMP TRIGGER seen_${table}_${op} AFTER ${op} ON main.${table} BEGIN INSERT INTO seen SELECT synchronous FROM pragma_synchronous(); END`);
      }
    }
    const levelsOf = async (write: () => Promise<unknown>) => {
      sqlite.exec('DELETE FROM seen');
      await write();
      return [...new Set(sqlite.prepare('SELECT level FROM seen').pluck().all())];
    };
    const NORMAL = 1;
    const FULL = 2;

    const [current, next] = [key('acme', 'current'), key('acme', 'next')];
    expect(await levelsOf(() => repo.createApp(appRecord('acme'), [current, next]))).toEqual([FULL]);
    const [s1, s2] = [session('acme'), session('acme')];
    const first = token(s1);
    expect(await levelsOf(() => repo.createSession(s1, first))).toEqual([NORMAL]);
    expect(await levelsOf(() => repo.createSession(s2, token(s2)))).toEqual([NORMAL]);
    expect(await levelsOf(() => repo.consumeRefreshToken(child(s1, first)))).toEqual([NORMAL]);
    expect(await levelsOf(() => repo.updateApp('acme', { disabled: true }, NOW))).toEqual([FULL]);
    expect(await levelsOf(() => repo.rotateKeys('acme', key('acme', 'next'), NOW))).toEqual([FULL]);
    expect(await levelsOf(() => repo.revokeKey('acme', current.kid, key('acme', 'next'), NOW))).toEqual([FULL]);
    expect(await levelsOf(() => repo.resealKeys('acme', [{ kid: next.kid, from: next.sealedPrivateKey!, to: 'tm1.resealed' }]))).toEqual([FULL]);
    expect(await levelsOf(() => repo.pruneKeys('acme', [current.kid], NOW))).toEqual([FULL]);
    expect(await levelsOf(() => repo.revokeSession(s1.sessionId, 'client', NOW))).toEqual([FULL]);
    expect(await levelsOf(() => repo.revokeSessions('acme', {}, 'admin-all', NOW))).toEqual([FULL]);
    // A write that fails still gives the connection back at NORMAL.
    await expect(repo.createApp(appRecord('acme'), [])).rejects.toThrow(/already exists/);
    expect(sqlite.pragma('synchronous', { simple: true })).toBe(NORMAL);
  });
});
