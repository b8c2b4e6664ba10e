import { and, asc, desc, eq, gt, gte, inArray, isNull, sql } from 'drizzle-orm';
import { conflict } from '../../errors.js';
import type { Repository, SigningKeyRecord } from '../repository.js';
import type { SqliteDb } from './open.js';
import { apps, auditEvents, refreshTokens, sessions, signingKeys } from './schema.js';

// Every write that reads before it writes runs in a BEGIN IMMEDIATE transaction: it takes SQLite's
// single write lock up front, so concurrent writers — in this process or another one sharing the
// file — are serialised (waiting up to busy_timeout) instead of deciding on a stale read.
const immediate = { behavior: 'immediate' } as const;

/** Rows deleted per pruning transaction: small enough that renews wait milliseconds at most. */
const PRUNE_BATCH = 2000;

export function createSqliteRepository(db: SqliteDb): Repository {
  const insertKey = (tx: Pick<SqliteDb, 'insert'>, key: SigningKeyRecord) => tx.insert(signingKeys).values(key).run();

  return {
    async createApp(app, keys) {
      db.transaction((tx) => {
        const existing = tx.select({ appId: apps.appId }).from(apps).where(eq(apps.appId, app.appId)).get();
        if (existing) throw conflict(`app "${app.appId}" already exists`);
        tx.insert(apps).values(app).run();
        for (const key of keys) insertKey(tx, key);
      }, immediate);
    },

    async findApp(appId) {
      return db.select().from(apps).where(eq(apps.appId, appId)).get();
    },

    async listApps() {
      return db.select().from(apps).orderBy(asc(apps.appId)).all();
    },

    async updateApp(appId, patch, now) {
      return db.update(apps).set({ ...patch, updatedAt: now }).where(eq(apps.appId, appId)).returning().get();
    },

    async listKeys(appId) {
      return db.select().from(signingKeys).where(eq(signingKeys.appId, appId)).orderBy(asc(signingKeys.kid)).all();
    },

    async rotateKeys(appId, newNext, now, due) {
      return db.transaction((tx) => {
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
      }, immediate);
    },

    async revokeKey(appId, kid, replacementNext, now) {
      return db.transaction((tx) => {
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
      }, immediate);
    },

    async pruneKeys(appId, kids, now) {
      if (kids.length === 0) return [];
      const pruned = db
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
        .all();
      return pruned.map((k) => k.kid);
    },

    async createSession(session, first) {
      db.transaction((tx) => {
        tx.insert(sessions).values(session).run();
        tx.insert(refreshTokens).values(first).run();
      }, immediate);
    },

    async findRefreshToken(jid) {
      return db
        .select({ token: refreshTokens, session: sessions })
        .from(refreshTokens)
        .innerJoin(sessions, eq(sessions.sessionId, refreshTokens.sessionId))
        .where(eq(refreshTokens.jid, jid))
        .get();
    },

    async findChild(parentJid) {
      return db.select().from(refreshTokens).where(eq(refreshTokens.parentJid, parentJid)).get();
    },

    async consumeRefreshToken(parentJid, child, now) {
      return db.transaction((tx) => {
        // The conditional update is the decision: only one writer can flip used_at from NULL.
        const consumed = tx
          .update(refreshTokens)
          .set({ usedAt: now })
          .where(
            and(
              eq(refreshTokens.jid, parentJid),
              isNull(refreshTokens.usedAt),
              sql`${refreshTokens.sessionId} IN (SELECT ${sessions.sessionId} FROM ${sessions} WHERE ${sessions.revokedAt} IS NULL)`,
            ),
          )
          .run();
        if (consumed.changes !== 1) return false;
        tx.insert(refreshTokens).values(child).run();
        return true;
      }, immediate);
    },

    async revokeSession(sessionId, reason, now) {
      db.update(sessions)
        .set({ revokedAt: now, revokeReason: reason })
        .where(and(eq(sessions.sessionId, sessionId), isNull(sessions.revokedAt)))
        .run();
    },

    async revokeSessions(appId, filter, reason, now) {
      const result = db
        .update(sessions)
        .set({ revokedAt: now, revokeReason: reason })
        .where(
          and(
            eq(sessions.appId, appId),
            filter.sub === undefined ? undefined : eq(sessions.sub, filter.sub),
            isNull(sessions.revokedAt),
            gt(sessions.expiresAt, now),
          ),
        )
        .run();
      return result.changes;
    },

    async pruneExpired(now) {
      const nowSeconds = Math.floor(now / 1000);
      // Repeats a batched DELETE until a batch comes back short.
      const drain = (deleteBatch: () => number) => {
        let total = 0;
        for (let n = PRUNE_BATCH; n === PRUNE_BATCH; total += n) n = deleteBatch();
        return total;
      };
      const refreshTokensDeleted = drain(
        () =>
          db
            .delete(refreshTokens)
            .where(sql`${refreshTokens.jid} IN (SELECT ${refreshTokens.jid} FROM ${refreshTokens} WHERE ${refreshTokens.exp} <= ${nowSeconds} LIMIT ${PRUNE_BATCH})`)
            .run().changes,
      );
      const sessionsDeleted = drain(
        () =>
          db
            .delete(sessions)
            .where(
              sql`${sessions.sessionId} IN (SELECT ${sessions.sessionId} FROM ${sessions} WHERE ${sessions.expiresAt} <= ${now}
                OR NOT EXISTS (SELECT 1 FROM ${refreshTokens} WHERE ${refreshTokens.sessionId} = ${sessions.sessionId}) LIMIT ${PRUNE_BATCH})`,
            )
            .run().changes,
      );
      return { refreshTokens: refreshTokensDeleted, sessions: sessionsDeleted };
    },

    async recordAudit(event) {
      db.insert(auditEvents).values(event).run();
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

    async close() {
      db.$client.close();
    },
  };
}
