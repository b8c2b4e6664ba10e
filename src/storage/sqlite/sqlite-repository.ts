import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { and, asc, count, desc, eq, getTableColumns, gt, gte, exists, inArray, isNull, lte, ne, sql, type Placeholder, type SQL } from 'drizzle-orm';
import { alias, type SQLiteColumn } from 'drizzle-orm/sqlite-core';
import { toSeconds } from '../../clock.js';
import { conflict, signingKeyRevoked } from '../../errors.js';
import { createPrivateFile, syncToDisk } from '../../files.js';
import type { JwksCaching, RefreshTokenRecord, Repository, SessionRecord, SigningKeyRecord } from '../repository.js';
import { partialBackupName } from './backup-files.js';
import { retryBusy, withBusyRetry } from './busy-retry.js';
import { groupCommit } from './group-commit.js';
import type { SqliteDb } from './open.js';
import { apps, auditEvents, catalogVersion, refreshTokens, serverMasterKeys, serverSettings, sessions, signingKeys } from './schema.js';

// Every write that reads before it writes runs in a BEGIN IMMEDIATE transaction: it takes SQLite's
// single write lock up front, so concurrent writers — in this process or another one sharing the
// file — are serialised (waiting, see busy-retry.ts) instead of deciding on a stale read.
const immediate = { behavior: 'immediate' } as const;

/**
 * Rows deleted per pruning transaction, which holds the write lock and its process's event loop: 4–5
 * ms for 500 tokens here (13–20 ms when its commit checkpoints the WAL; 2,000 took 20 ms, up to 60–120).
 */
const PRUNE_BATCH = 500;

/**
 * After each pruning batch the write lock is left to others three times as long as the batch held it:
 * a backlog (after downtime, or a wave of expiries) then takes at most a quarter of the lock from the
 * renews, which, run back to back, it cut to a third of their rate (README, Operations: Pruning).
 */
const PRUNE_REST_FACTOR = 3;

/**
 * Rowids per transaction when revoking all of an app's sessions (`session revoke --all`), or a
 * subject's when it has more: a window full of them holds the write lock ~7 ms here (~20 ms when its
 * commit checkpoints the WAL).
 */
const REVOKE_WINDOW = 5000;

/**
 * After each window a mass revocation leaves the write lock to others as long as the window held it:
 * every other app's renews keep at least half of it, and the kill switch still ends a million
 * sessions in a few seconds (README, Admin CLI).
 */
const REVOKE_REST_FACTOR = 1;

/** Runs `batch` (one transaction; truthy while there may be more) until it is done or `signal` aborts, resting after each. */
async function inPacedBatches(batch: () => unknown, signal: AbortSignal | undefined, restFactor = PRUNE_REST_FACTOR): Promise<void> {
  while (!signal?.aborted) {
    let heldMs = 0;
    const more = await retryBusy(() => {
      const started = performance.now();
      try {
        return batch();
      } finally {
        heldMs = performance.now() - started;
      }
    });
    if (!more) return;
    await sleep(heldMs * restFactor, undefined, { signal }).catch(() => undefined); // an abort ends the rest early
  }
}

const p = sql.placeholder;

/**
 * A row, unchanged, as the named parameters of a prepared statement (its fields are the placeholders'
 * names). The mapped type is what lets an interface's row pass where drizzle asks for a record,
 * without copying the row on every call.
 */
const asParams = <T extends object>(row: T): { [K in keyof T]: T[K] } => row;

/** Placeholders as the columns of a SELECT (`SELECT :jid AS jid, …`). */
const selected = <T extends Record<string, Placeholder>>(values: T) =>
  Object.fromEntries(Object.entries(values).map(([name, value]) => [name, sql`${value}`.as(name)])) as { [K in keyof T]: SQL.Aliased<unknown> };

/** A refresh token's child (the token it was renewed into) and its parent, in queries of both. */
const children = alias(refreshTokens, 'child');
const parents = alias(refreshTokens, 'parent');

/**
 * The expired tokens of a pruning batch that may go. A token is used exactly when it has a child, so
 * a token goes only after its parent or with it: left alone, a used parent would look unused (and
 * renew again, if unexpired). Parents usually come first in the batch, but not when the refresh TTL
 * was shortened between them.
 */
function tokensThatMayGo<T extends { jid: string; parentJid: string | null; parentKept: unknown }>(batch: T[]): T[] {
  const inBatch = new Map(batch.map((t) => [t.jid, t]));
  const verdicts = new Map<string, boolean>();
  const mayGo = (t: T): boolean => {
    let verdict = verdicts.get(t.jid);
    if (verdict === undefined) {
      const parent = t.parentJid === null ? undefined : inBatch.get(t.parentJid);
      verdict = !t.parentKept || (parent !== undefined && mayGo(parent));
      verdicts.set(t.jid, verdict);
    }
    return verdict;
  };
  return batch.filter(mayGo);
}

/** The JWKS caching of the server_settings row, if there is one. */
function jwksCachingOf(row: typeof serverSettings.$inferSelect | undefined): JwksCaching | null {
  if (!row) return null;
  const { formerJwksMaxAgeSeconds: former, jwksMaxAgeLoweredAt: loweredAt } = row;
  return { maxAgeSeconds: row.jwksMaxAgeSeconds, former: former === null || loweredAt === null ? null : { maxAgeSeconds: former, loweredAt } };
}

/** A session's columns but the login's client, which only `session list` reads, and the issue's key. */
const { ip: _ip, useragent: _useragent, issueKey: _issueKey, ...sessionColumns } = getTableColumns(sessions);

/** Statements of the request path, prepared once: building and preparing SQL per request costs more than running it. */
function prepareHotPath(db: SqliteDb) {
  const tokenValues = {
    jid: p('jid'),
    sessionId: p('sessionId'),
    parentJid: p('parentJid'),
    iat: p('iat'),
    nbf: p('nbf'),
    exp: p('exp'),
    ip: p('ip'),
    useragent: p('useragent'),
    issuedAt: p('issuedAt'),
    tokenSha256: p('tokenSha256'),
  };
  return {
    catalogVersion: db.select({ version: catalogVersion.version }).from(catalogVersion).prepare(),
    findApp: db.select().from(apps).where(eq(apps.appId, p('appId'))).prepare(),
    listKeys: db.select().from(signingKeys).where(eq(signingKeys.appId, p('appId'))).orderBy(asc(signingKeys.kid)).prepare(),
    findRefreshToken: db
      .select({ token: refreshTokens, session: sessionColumns, child: children })
      .from(refreshTokens)
      .innerJoin(sessions, eq(sessions.sessionId, refreshTokens.sessionId))
      .leftJoin(children, eq(children.parentJid, refreshTokens.jid))
      .where(eq(refreshTokens.jid, p('jid')))
      .prepare(),
    insertSession: db
      .insert(sessions)
      .values({
        sessionId: p('sessionId'),
        appId: p('appId'),
        sub: p('sub'),
        personal: p('personal'),
        createdAt: p('createdAt'),
        expiresAt: p('expiresAt'),
        revokedAt: p('revokedAt'),
        revokeReason: p('revokeReason'),
        ip: p('ip'),
        useragent: p('useragent'),
        issueKey: p('issueKey'),
      })
      .prepare(),
    insertToken: db.insert(refreshTokens).values(tokenValues).prepare(),
    // An issue repeated with its Idempotency-Key ends the session its earlier attempt started
    // (found through the app and subject index), unless that session has been renewed: then its
    // answer was not lost, and the key was sent again by mistake. A session's first token has the
    // session's id as its jid, so "renewed" is one probe of the unique parent_jid index.
    replaceEarlierAttempt: db
      .update(sessions)
      .set({ revokedAt: sql`${p('now')}`, revokeReason: 'retried' })
      .where(
        and(
          eq(sessions.appId, p('appId')),
          eq(sessions.sub, p('sub')),
          eq(sessions.issueKey, p('issueKey')),
          isNull(sessions.revokedAt),
          sql`NOT EXISTS (SELECT 1 FROM ${refreshTokens} WHERE ${refreshTokens.parentJid} = ${sessions.sessionId})`,
        ),
      )
      .prepare(),
    // The app's max-sessions: of the subject's other live sessions, those beyond the newest `keep` end,
    // found through the app and subject index. The new session is left out by id, not by time: one
    // started in the same millisecond may sort after it.
    revokeBeyondLimit: db
      .update(sessions)
      .set({ revokedAt: sql`${p('now')}`, revokeReason: 'session-limit' })
      .where(
        sql`${sessions.sessionId} IN (SELECT ${sessions.sessionId} FROM ${sessions} WHERE ${sessions.appId} = ${p('appId')} AND ${sessions.sub} = ${p('sub')}
          AND ${sessions.sessionId} <> ${p('sessionId')} AND ${sessions.revokedAt} IS NULL AND ${sessions.expiresAt} > ${p('now')}
          ORDER BY ${sessions.createdAt} DESC, ${sessions.sessionId} DESC LIMIT -1 OFFSET ${p('keep')})`,
      )
      .prepare(),
    // The single-use decision is this one statement, run under the write lock: the child is stored
    // only if its session is live (selected by primary key, so zero rows when revoked), and the unique
    // parent_jid lets only the first child in (a second one is a conflict, ignored: zero changes).
    // Nothing is written to the parent's row.
    consume: db
      .insert(refreshTokens)
      .select(
        db
          .select({ ...selected(tokenValues), sessionId: sessions.sessionId })
          .from(sessions)
          .where(and(eq(sessions.sessionId, p('sessionId')), isNull(sessions.revokedAt))),
      )
      .onConflictDoNothing({ target: refreshTokens.parentJid })
      .prepare(),
    // Inside the write's transaction: a key revoked after a pair was signed with it (key revoke is an
    // emergency) must not leave a session whose tokens are refused from their first use.
    revokedKey: db
      .select({ kid: signingKeys.kid })
      .from(signingKeys)
      .where(and(eq(signingKeys.kid, p('kid')), eq(signingKeys.state, 'revoked')))
      .prepare(),
  };
}

export function createSqliteRepository(db: SqliteDb): Repository {
  const insertKey = (tx: Pick<SqliteDb, 'insert'>, key: SigningKeyRecord) => tx.insert(signingKeys).values(key).run();
  const hot = prepareHotPath(db);
  // The two writes of the request path. Both run inside a group-commit batch (one transaction per
  // event-loop turn, a savepoint each), which also waits out another process's lock itself.
  const commit = groupCommit(db.$client);
  const insertSession = (session: SessionRecord, first: RefreshTokenRecord, issueKey: string | null) => {
    hot.insertSession.run({ ...session, ip: first.ip, useragent: first.useragent, issueKey });
    hot.insertToken.run(asParams(first));
  };

  const consume = (child: RefreshTokenRecord) => hot.consume.run(asParams(child)).changes === 1;
  const refuseRevoked = (kid: string | undefined) => {
    if (kid !== undefined && hot.revokedKey.get({ kid })) throw signingKeyRevoked();
  };
  /** Deletes up to PRUNE_BATCH rows of `table` matching `where`, found by their key `id`; resolves to how many. */
  const deleteBatch = (table: typeof sessions | typeof auditEvents, id: SQLiteColumn, where: SQL) =>
    db.delete(table).where(sql`${id} IN (SELECT ${id} FROM ${table} WHERE ${where} LIMIT ${PRUNE_BATCH})`).run().changes;
  // Admin changes and revocations are on disk before they return: their commit syncs the WAL
  // (synchronous=FULL, 0.3–0.5 ms here), so a power cut cannot bring back an ended session or a
  // revoked key, or lose an app key already shown. Issues and renews keep the connection's NORMAL
  // (open.ts): a power cut may lose the last of those, which logs those users out, never in.
  const connectionSync = db.$client.pragma('synchronous', { simple: true }) as number;
  const synced = <T>(write: () => T): T => {
    db.$client.pragma('synchronous = FULL');
    try {
      return write();
    } finally {
      db.$client.pragma(`synchronous = ${connectionSync}`);
    }
  };
  // From here on, waiting for another process's lock is done by withBusyRetry (or the batch), without
  // blocking the event loop. (Preparing the statements above may itself wait, e.g. while another process is
  // migrating a fresh file, so that still used SQLite's own busy_timeout.)
  db.$client.pragma('busy_timeout = 0');

  return withBusyRetry<Repository>({
    async createApp(app, keys) {
      synced(() =>
        db.transaction((tx) => {
          const existing = tx.select({ appId: apps.appId }).from(apps).where(eq(apps.appId, app.appId)).get();
          if (existing) throw conflict(`app "${app.appId}" already exists`);
          tx.insert(apps).values(app).run();
          for (const key of keys) insertKey(tx, key);
        }, immediate),
      );
    },

    async findApp(appId) {
      return hot.findApp.get({ appId });
    },

    async deleteApp(appId) {
      return synced(() =>
        db.transaction((tx) => {
          const app = tx.select({ disabled: apps.disabled }).from(apps).where(eq(apps.appId, appId)).get();
          if (!app) return 'unknown' as const;
          if (!app.disabled) return 'enabled' as const;
          const stored = tx.select({ n: count() }).from(sessions).where(eq(sessions.appId, appId)).get()!.n;
          if (stored > 0) return { sessions: stored };
          tx.delete(signingKeys).where(eq(signingKeys.appId, appId)).run();
          tx.delete(apps).where(eq(apps.appId, appId)).run();
          return 'deleted' as const;
        }, immediate),
      );
    },

    async catalogVersion() {
      return hot.catalogVersion.get()?.version ?? 0;
    },

    async listApps() {
      return db.select().from(apps).orderBy(asc(apps.appId)).all();
    },

    async updateApp(appId, patch, now, tokenLifetimeMs) {
      return synced(() =>
        db.transaction((tx) => {
          const before = tx.select().from(apps).where(eq(apps.appId, appId)).get();
          if (!before) return undefined;
          const changes = typeof patch === 'function' ? patch(before) : patch; // may throw: nothing written yet
          if (tokenLifetimeMs) {
            const signedUntil = sql`coalesce(${signingKeys.retiredAt}, ${now}) + ${tokenLifetimeMs(before)}`;
            tx.update(signingKeys)
              .set({ verifiesAtLeastUntil: sql`max(coalesce(${signingKeys.verifiesAtLeastUntil}, 0), ${signedUntil})` })
              .where(and(eq(signingKeys.appId, appId), ne(signingKeys.state, 'revoked'), isNull(signingKeys.prunedAt)))
              .run();
          }
          return tx.update(apps).set({ ...changes, updatedAt: now }).where(eq(apps.appId, appId)).returning().get();
        }, immediate),
      );
    },

    async listKeys(appId) {
      return hot.listKeys.all({ appId });
    },

    async rotateKeys(appId, newNext, now, due) {
      return synced(() =>
        db.transaction((tx) => {
          const keys = tx.select().from(signingKeys).where(eq(signingKeys.appId, appId)).all();
          const next = keys.find((k) => k.state === 'next');
          const current = keys.find((k) => k.state === 'current');
          if (!next) return undefined;
          if (due && ((current?.activatedAt ?? 0) > due.currentActivatedAtOrBefore || next.createdAt > due.nextCreatedAtOrBefore)) return undefined;
          // Order matters: the partial unique indexes allow one current and one next at any moment.
          tx.update(signingKeys)
            .set({ state: 'retired', retiredAt: now })
            .where(and(eq(signingKeys.appId, appId), eq(signingKeys.state, 'current')))
            .run();
          tx.update(signingKeys).set({ state: 'current', activatedAt: now }).where(eq(signingKeys.kid, next.kid)).run();
          insertKey(tx, newNext);
          return { ...next, state: 'current' as const, activatedAt: now };
        }, immediate),
      );
    },

    async revokeKey(appId, kid, replacementNext, now) {
      return synced(() =>
        db.transaction((tx) => {
          const key = tx
            .select()
            .from(signingKeys)
            .where(and(eq(signingKeys.appId, appId), eq(signingKeys.kid, kid)))
            .get();
          if (!key || key.state === 'revoked') return key;
          tx.update(signingKeys).set({ state: 'revoked', revokedAt: now }).where(eq(signingKeys.kid, kid)).run();
          if (key.state === 'current') {
            tx.update(signingKeys)
              .set({ state: 'current', activatedAt: now })
              .where(and(eq(signingKeys.appId, appId), eq(signingKeys.state, 'next')))
              .run();
          }
          if (key.state === 'current' || key.state === 'next') insertKey(tx, replacementNext);
          return { ...key, state: 'revoked' as const, revokedAt: now };
        }, immediate),
      );
    },

    async pruneKeys(appId, kids, now) {
      if (kids.length === 0) return [];
      const pruned = synced(() =>
        db
          .update(signingKeys)
          .set({ sealedPrivateKey: null, prunedAt: now })
          .where(
            and(
              eq(signingKeys.appId, appId),
              inArray(signingKeys.kid, kids),
              inArray(signingKeys.state, ['retired', 'revoked']),
              isNull(signingKeys.prunedAt),
            ),
          )
          .returning({ kid: signingKeys.kid })
          .all(),
      );
      return pruned.map((k) => k.kid);
    },

    async resealKeys(appId, changes) {
      if (changes.length === 0) return 0;
      return synced(() =>
        db.transaction((tx) => {
          let replaced = 0;
          for (const { kid, from, to } of changes) {
            replaced += tx
              .update(signingKeys)
              .set({ sealedPrivateKey: to })
              .where(and(eq(signingKeys.appId, appId), eq(signingKeys.kid, kid), eq(signingKeys.sealedPrivateKey, from)))
              .run().changes;
          }
          return replaced;
        }, immediate),
      );
    },

    async createSession(session, first, { issueKey, maxLiveSessions, signedBy } = {}) {
      const { appId, sub, createdAt: now } = session;
      await commit(() => {
        refuseRevoked(signedBy);
        if (issueKey !== undefined) hot.replaceEarlierAttempt.run({ now, appId, sub, issueKey });
        insertSession(session, first, issueKey ?? null);
        if (maxLiveSessions !== undefined) hot.revokeBeyondLimit.run({ now, appId, sub, sessionId: session.sessionId, keep: maxLiveSessions - 1 });
      });
    },

    async listSessions(appId, sub) {
      return db
        .select({ ...sessionColumns, ip: sessions.ip, useragent: sessions.useragent })
        .from(sessions)
        .where(and(eq(sessions.appId, appId), eq(sessions.sub, sub)))
        .orderBy(desc(sessions.createdAt), desc(sessions.sessionId))
        .all();
    },

    async listLiveSessions(appId, sub, now, { limit, include }) {
      const live = (...where: SQL[]) =>
        db
          .select({ ...sessionColumns, ip: sessions.ip, useragent: sessions.useragent })
          .from(sessions)
          .where(and(eq(sessions.appId, appId), eq(sessions.sub, sub), isNull(sessions.revokedAt), gt(sessions.expiresAt, now), ...where));
      const newest = live().orderBy(desc(sessions.createdAt), desc(sessions.sessionId)).limit(limit).all();
      if (include === undefined || newest.some((s) => s.sessionId === include)) return newest;
      return [...newest, ...live(eq(sessions.sessionId, include)).all()];
    },

    async findRefreshToken(jid) {
      return hot.findRefreshToken.get({ jid });
    },

    async refuseRevokedKey(kid) {
      refuseRevoked(kid);
    },

    async consumeRefreshToken(child, signedBy) {
      return commit(() => {
        refuseRevoked(signedBy);
        return consume(child);
      });
    },

    async updatePersonal(appId, sub, personal, now) {
      const live = and(eq(sessions.appId, appId), eq(sessions.sub, sub), isNull(sessions.revokedAt), gt(sessions.expiresAt, now));
      return commit(() => db.update(sessions).set({ personal }).where(live).run().changes);
    },

    async revokeSession(sessionId, reason, now) {
      synced(() =>
        db.update(sessions)
          .set({ revokedAt: now, revokeReason: reason })
          .where(and(eq(sessions.sessionId, sessionId), isNull(sessions.revokedAt)))
          .run(),
      );
    },

    async revokeSessions(appId, filter, reason, now) {
      const revokeAtOnce = () => {
        const live = and(
          eq(sessions.appId, appId),
          filter.sub === undefined ? undefined : eq(sessions.sub, filter.sub),
          filter.sessionId === undefined ? undefined : eq(sessions.sessionId, filter.sessionId),
          filter.exceptSessionId === undefined ? undefined : ne(sessions.sessionId, filter.exceptSessionId),
          isNull(sessions.revokedAt),
          gt(sessions.expiresAt, now),
        );
        return synced(() => db.update(sessions).set({ revokedAt: now, revokeReason: reason }).where(live).run()).changes;
      };
      const { sub } = filter;
      const mine = sub === undefined ? 'app_id = @appId' : 'app_id = @appId AND sub = @sub'; // equalities, for the (app, sub) index
      // One session, or a subject's few (at most a window's worth stored): one statement, through their index.
      if (filter.sessionId !== undefined) return revokeAtOnce();
      if (sub !== undefined) {
        const stored = db.$client.prepare(`SELECT count(*) FROM (SELECT 1 FROM sessions WHERE ${mine} LIMIT ${REVOKE_WINDOW + 1})`).pluck().get({ appId, sub }) as number;
        if (stored <= REVOKE_WINDOW) return revokeAtOnce();
      }
      // All of the app's (the kill switch), or a subject's thousands: one statement held the write lock —
      // every app's renews — ~10 s per million sessions of an app here, 2.3 s per million of one
      // subject (500s past the 5 s wait). So: ranges of REVOKE_WINDOW rowids, in the table's own order
      // (the (app, sub) index visits an app's rows in its subjects' random order: ~10 s per million,
      // against ~1.5 s in windows), one synced transaction each, resting between them. Sessions
      // started after `now` are left alone. better-sqlite3 itself, as drizzle cannot say NOT INDEXED
      // and its db.run would hide SQLITE_BUSY (retried) and SQLITE_FULL behind an error of its own.
      const span = db.$client.prepare(`SELECT min(rowid) AS first, max(rowid) AS last FROM sessions WHERE ${mine}`).get({ appId, sub }) as { first: number | null; last: number | null };
      if (span.first === null || span.last === null) return 0;
      const inWindow = db.$client.prepare(
        `UPDATE sessions NOT INDEXED SET revoked_at = @now, revoke_reason = @reason
         WHERE rowid >= @from AND rowid < @to AND ${mine} AND revoked_at IS NULL AND expires_at > @now AND created_at <= @now
           AND session_id IS NOT @except`,
      );
      const { last } = span;
      let from = span.first;
      let revoked = 0;
      const revokeWindow = () => {
        const to = from + REVOKE_WINDOW;
        revoked += synced(() => inWindow.run({ appId, sub, now, reason, from, to, except: filter.exceptSessionId ?? null })).changes;
        from = to;
        return from <= last;
      };
      await inPacedBatches(revokeWindow, undefined, REVOKE_REST_FACTOR);
      return revoked;
    },

    async pruneExpired(now, signal) {
      const nowSeconds = toSeconds(now);
      let refreshTokensDeleted = 0;
      let sessionsDeleted = 0;
      // Expired tokens are read in (exp, rowid) order, one batch per transaction, each batch from where
      // the last one ended: a call reads every expired token once, however long its session's chain.
      // A token left for its parent (tokensThatMayGo) waits for the next call. A session's only unused
      // token is its newest, the only one that can renew it: when an expired, unused token goes, its
      // session goes with it — found without an index of tokens by session (schema.ts).
      const rowid = sql<number>`${refreshTokens}.rowid`;
      let after = { exp: Number.MIN_SAFE_INTEGER, rowid: 0 };
      const pruneTokens = () =>
        db.transaction((tx) => {
          const batch = tx
            .select({
              exp: refreshTokens.exp,
              rowid,
              jid: refreshTokens.jid,
              sessionId: refreshTokens.sessionId,
              parentJid: refreshTokens.parentJid,
              parentKept: exists(tx.select({ one: sql`1` }).from(parents).where(eq(parents.jid, refreshTokens.parentJid))),
              used: exists(tx.select({ one: sql`1` }).from(children).where(eq(children.parentJid, refreshTokens.jid))),
            })
            .from(refreshTokens)
            .where(and(lte(refreshTokens.exp, nowSeconds), sql`(${refreshTokens.exp}, ${rowid}) > (${after.exp}, ${after.rowid})`))
            .orderBy(asc(refreshTokens.exp), asc(rowid))
            .limit(PRUNE_BATCH)
            .all();
          const going = tokensThatMayGo(batch);
          if (going.length) tx.delete(refreshTokens).where(inArray(refreshTokens.jid, going.map((t) => t.jid))).run();
          const finished = going.filter((t) => !t.used).map((t) => t.sessionId);
          if (finished.length) sessionsDeleted += tx.delete(sessions).where(inArray(sessions.sessionId, finished)).run().changes;
          refreshTokensDeleted += going.length;
          after = batch.at(-1) ?? after;
          return batch.length;
        }, immediate);
      // A session past its absolute end has no unexpired token (exp is capped at the end): the pass
      // above has taken them all.
      const pruneSessions = () => {
        const changes = deleteBatch(sessions, sessions.sessionId, sql`${sessions.expiresAt} <= ${now}`);
        sessionsDeleted += changes;
        return changes;
      };
      // Between batches the event loop serves requests (maintenance runs in a serving worker), other
      // processes write, and a shutdown can stop the work; a batch that meets another process's write
      // lock waits for it alone.
      await inPacedBatches(pruneTokens, signal);
      await inPacedBatches(pruneSessions, signal);
      return { refreshTokens: refreshTokensDeleted, sessions: sessionsDeleted };
    },

    async recordAudit(event) {
      db.insert(auditEvents).values(event).run();
    },

    async recordAuditOnce(event, since) {
      const same = (column: SQLiteColumn, value: string | null) => (value === null ? isNull(column) : eq(column, value));
      return db.transaction((tx) => {
        const earlier = tx
          .select({ id: auditEvents.id })
          .from(auditEvents)
          .where(and(same(auditEvents.appId, event.appId), gt(auditEvents.at, since), eq(auditEvents.event, event.event), same(auditEvents.clientAddress, event.clientAddress)))
          .limit(1)
          .get();
        if (earlier) return false;
        tx.insert(auditEvents).values(event).run();
        return true;
      }, immediate);
    },

    async pruneAudit(before) {
      let deleted = 0;
      const batch = () => {
        const changes = deleteBatch(auditEvents, auditEvents.id, sql`${auditEvents.at} < ${before}`);
        deleted += changes;
        return changes;
      };
      await inPacedBatches(batch, undefined);
      return deleted;
    },

    async listAudit({ appId, since, limit }) {
      return db
        .select()
        .from(auditEvents)
        .where(and(appId === undefined ? undefined : eq(auditEvents.appId, appId), since === undefined ? undefined : gte(auditEvents.at, since)))
        // Insertion order breaks ties between events of the same millisecond.
        .orderBy(desc(auditEvents.at), sql`rowid DESC`)
        .limit(limit)
        .all();
    },

    async recordServerStart({ masterKeyIds, jwksCaching }, now) {
      return synced(() =>
        db.transaction((tx) => {
          tx.delete(serverMasterKeys).run();
          for (const id of masterKeyIds) tx.insert(serverMasterKeys).values({ id, recordedAt: now }).run();
          const caching = jwksCaching(jwksCachingOf(tx.select().from(serverSettings).get()));
          const row = {
            jwksMaxAgeSeconds: caching.maxAgeSeconds,
            recordedAt: now,
            formerJwksMaxAgeSeconds: caching.former?.maxAgeSeconds ?? null,
            jwksMaxAgeLoweredAt: caching.former?.loweredAt ?? null,
          };
          tx.insert(serverSettings)
            .values({ id: 1, ...row })
            .onConflictDoUpdate({ target: serverSettings.id, set: row })
            .run();
          return caching;
        }, immediate),
      );
    },

    async serverMasterKeys() {
      return db.select({ id: serverMasterKeys.id }).from(serverMasterKeys).all().map((row) => row.id);
    },

    async serverJwksCaching() {
      return jwksCachingOf(db.select().from(serverSettings).get());
    },

    async backup(file) {
      const exists = () => conflict(`${file} already exists; back up to a new file`);
      if (fs.existsSync(file)) throw exists();
      const partial = partialBackupName(file);
      if (!createPrivateFile(partial)) throw conflict(`${partial} already exists`);
      try {
        // One statement, one read transaction: a snapshot of the file as of its start, written compactly.
        db.$client.prepare('VACUUM INTO ?').run(partial);
        syncToDisk(partial);
        if (fs.existsSync(file)) throw exists(); // made by someone else meanwhile: never over it
        fs.renameSync(partial, file);
        syncToDisk(path.dirname(file));
      } finally {
        fs.rmSync(partial, { force: true });
      }
      return fs.statSync(file).size;
    },

    async close() {
      db.$client.close();
    },
  });
}
