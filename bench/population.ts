import Database from 'better-sqlite3';
import { randomInt, type KeyObject } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { root, tokenmintEnv, user } from './targets.js';

// The growth rows' population: live sessions written straight into a stopped server's file, and
// valid refresh tokens for a random part of them, signed by tokenmint's own built modules (its
// keyring opens the app's sealed key under the master key, as the server does).

const sessionId = (i: number) => `01BENCHSESSION${String(i).padStart(12, '0')}`;
const tokenJid = (i: number) => `01BENCHTOKEN${String(i).padStart(14, '0')}`;
/** The times of every stored session and token made at `now`, shared by their rows and their signed claims. */
const timesAt = (now: number) => {
  const end = now + 30 * 86_400_000;
  return { end, iat: Math.floor(now / 1000), exp: Math.floor(end / 1000) };
};

/** 1..count in a random order (Fisher–Yates), indexed from 1. */
function shuffled(count: number): Int32Array {
  const order = Int32Array.from({ length: count + 1 }, (_, i) => i);
  for (let i = count; i > 1; i--) {
    const j = randomInt(1, i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/**
 * Live sessions, each with one unexpired, never used refresh token; resolves to the file's size in
 * bytes. Token i belongs to a session picked by a random permutation: tokens sort by jid in the
 * order they were issued, while the sessions they renew were started at any time, so renews that
 * come in jid order still meet their sessions in no particular order.
 */
export function addLiveSessions(dir: string, count: number, now: number): number {
  const db = new Database(tokenmintEnv(dir).DATABASE_URL);
  const { end, iat, exp } = timesAt(now);
  const owner = shuffled(count);
  db.function('session_id', sessionId);
  db.function('owner_session_id', (i: number) => sessionId(owner[i]!));
  db.function('token_jid', tokenJid);
  const numbers = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)`;
  db.prepare(
    `${numbers} INSERT INTO sessions (session_id, app_id, sub, personal, created_at, expires_at, ip, useragent)
       SELECT session_id(i), 'bench', 'user-' || i, NULL, :now, :end, :ip, :useragent FROM n`,
  ).run({ count, now, end, ...user });
  db.prepare(
    `${numbers} INSERT INTO refresh_tokens (jid, session_id, parent_jid, iat, nbf, exp, ip, useragent, issued_at, token_sha256)
       SELECT token_jid(i), owner_session_id(i), NULL, :iat, :iat, :exp, :ip, :useragent, :now, randomblob(32) FROM n`,
  ).run({ count, iat, exp, now, ...user });
  db.pragma('wal_checkpoint(TRUNCATE)');
  const bytes = Number(db.pragma('page_count', { simple: true })) * Number(db.pragma('page_size', { simple: true }));
  db.close();
  return bytes;
}

const BACKLOG_CHAIN = 8;

/**
 * A backlog of expired refresh tokens, as after downtime: `count` live sessions, each a chain of
 * BACKLOG_CHAIN tokens whose oldest all expired in the last hour (interleaved across sessions, in
 * the order they were issued) and whose newest is unexpired. Resolves to the number of expired tokens.
 */
export function addExpiredBacklog(dir: string, count: number, now: number): number {
  const db = new Database(tokenmintEnv(dir).DATABASE_URL);
  const nowSeconds = Math.floor(now / 1000);
  const last = BACKLOG_CHAIN - 1;
  const exp = (i: number, j: number) => (j === last ? nowSeconds + 86_400 : nowSeconds - 60 - (last - j) * 450 - (i % 450));
  const jid = (i: number, j: number) => `${String(exp(i, j)).padStart(12, '0')}${String(i).padStart(14, '0')}`;
  db.function('backlog_exp', exp);
  db.function('backlog_jid', jid);
  const numbers = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count), k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < ${last})`;
  db.prepare(
    `${numbers} INSERT INTO sessions (session_id, app_id, sub, personal, created_at, expires_at, ip, useragent)
       SELECT 'backlog-' || i, 'bench', 'backlog-user-' || i, NULL, :now, :end, :ip, :useragent FROM n`,
  ).run({ count, now, end: now + 30 * 86_400_000, ...user });
  db.prepare(
    `${numbers} INSERT INTO refresh_tokens (jid, session_id, parent_jid, iat, nbf, exp, ip, useragent, issued_at, token_sha256)
       SELECT backlog_jid(i, j), 'backlog-' || i, CASE j WHEN 0 THEN NULL ELSE backlog_jid(i, j - 1) END,
              backlog_exp(i, j) - 3600, backlog_exp(i, j) - 3600, backlog_exp(i, j), :ip, :useragent, (backlog_exp(i, j) - 3600) * 1000, randomblob(32)
       FROM n, k ORDER BY backlog_exp(i, j), i`,
  ).run({ count, ...user });
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return count * last;
}

/** Refresh tokens in `dir`'s file that expired by `now`. */
export function expiredTokens(dir: string, now: number): number {
  const db = new Database(tokenmintEnv(dir).DATABASE_URL, { readonly: true });
  const count = db.prepare('SELECT count(*) FROM refresh_tokens WHERE exp <= ?').pluck().get(Math.floor(now / 1000)) as number;
  db.close();
  return count;
}

// The few of tokenmint's exports used here (dist/, built by `npm run bench`).
interface Built {
  loadConfig(env: NodeJS.ProcessEnv, cwd: string): unknown;
  openTokenmint(config: unknown): { keyring: { signer(appId: string): Promise<{ privateKey: KeyObject; encodedHeader: string }> }; close(): Promise<void> };
  signJwt(claims: object, signer: { privateKey: KeyObject; encodedHeader: string }): string;
  tokenDigest(token: string): Buffer;
}
const built = async (): Promise<Built> => {
  const load = async (file: string) => (await import(pathToFileURL(path.join(root, 'dist', file)).href)) as Partial<Built>;
  return { ...(await load('config.js')), ...(await load('tokenmint.js')), ...(await load('tokens/jwt.js')) } as Built;
};

/** The order the growth rows renew their tokens in. */
export type RenewOrder = 'at random' | 'in issue order';

/**
 * Refresh tokens for `count` of the `live` sessions of addLiveSessions, picked at random, each as the
 * server would have issued it: signed with the app's current key, its digest stored in its row.
 * `order`: as picked, or sorted by jid — the order they were issued in, in which sessions that renew
 * on schedule (an access-token lifetime after their last renew) come back.
 */
export async function liveRefreshTokens(dir: string, live: number, count: number, now: number, order: RenewOrder = 'at random'): Promise<string[]> {
  const { loadConfig, openTokenmint, signJwt, tokenDigest } = await built();
  const env = tokenmintEnv(dir);
  const tm = openTokenmint(loadConfig(env, dir));
  const signer = await tm.keyring.signer('bench');
  await tm.close();
  const picked = new Set<number>();
  while (picked.size < count) picked.add(randomInt(1, live + 1));
  const numbers = order === 'in issue order' ? [...picked].sort((a, b) => a - b) : [...picked];
  const { iat, exp } = timesAt(now);
  const tokens = numbers.map((i) => [i, signJwt({ iss: 'bench', jid: tokenJid(i), iat, nbf: iat, exp, type: 'refresh' }, signer)] as const);
  const db = new Database(env.DATABASE_URL);
  const store = db.prepare('UPDATE refresh_tokens SET token_sha256 = ? WHERE jid = ?');
  db.transaction(() => tokens.forEach(([i, token]) => store.run(tokenDigest(token), tokenJid(i))))();
  db.close();
  return tokens.map(([, token]) => token);
}
