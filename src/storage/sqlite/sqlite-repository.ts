import { and, asc, desc, eq, gt, gte, inArray, isNull, sql } from 'drizzle-orm';
import { conflict } from '../../errors.js';
import type { RefreshTokenRecord, Repository, SessionRecord, SigningKeyRecord } from '../repository.js';
import { withBusyRetry } from './busy-retry.js';
import { groupCommit } from './group-commit.js';
import type { SqliteDb } from './open.js';
import { apps, auditEvents, catalogVersion, refreshTokens, sessions, signingKeys } from './schema.js';

// Every write that reads before it writes runs in a BEGIN IMMEDIATE transaction: it takes SQLite's
// single write lock up front, so concurrent writers — in this process or another one sharing the
// file — are serialised (waiting, see busy-retry.ts) instead of deciding on a stale read.
const immediate = { behavior: 'immediate' } as const;

/** Rows deleted per pruning transaction: small enough that renews wait milliseconds at most. */
const PRUNE_BATCH = 2000;

const p = sql.placeholder;

/**
 * A row, unchanged, as the named parameters of a prepared statement (its fields are the placeholders'
 * names). The mapped type is what lets an interface's row pass where drizzle asks for a record,
 * without copying the row on every call.
 */
const asParams = <T extends object>(row: T): { [K in keyof T]: T[K] } => row;

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
    usedAt: p('usedAt'),
    tokenSha256: p('tokenSha256'),
  };
  return {
    catalogVersion: db.select({ version: catalogVersion.version }).from(catalogVersion).prepare(),
    findApp: db.select().from(apps).where(eq(apps.appId, p('appId'))).prepare(),
    listKeys: db.select().from(signingKeys).where(eq(signingKeys.appId, p('appId'))).orderBy(asc(signingKeys.kid)).prepare(),
    findRefreshToken: db
      .select({ token: refreshTokens, session: sessions })
      .from(refreshTokens)
      .innerJoin(sessions, eq(sessions.sessionId, refreshTokens.sessionId))
      .where(eq(refreshTokens.jid, p('jid')))
      .prepare(),
    findChild: db.select().from(refreshTokens).where(eq(refreshTokens.parentJid, p('parentJid'))).prepare(),
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
      })
      .prepare(),
    insertToken: db.insert(refreshTokens).values(tokenValues).prepare(),
    // The conditional update is the decision: only one writer can flip used_at from NULL.
    consume: db
      .update(refreshTokens)
      .set({ usedAt: sql`${p('now')}` })
      .where(
        and(
          eq(refreshTokens.jid, p('jid')),
          isNull(refreshTokens.usedAt),
          // Correlated, so it is one primary-key lookup (an IN over all live sessions grows with the table).
          sql`EXISTS (SELECT 1 FROM ${sessions} WHERE ${sessions.sessionId} = ${refreshTokens.sessionId} AND ${sessions.revokedAt} IS NULL)`,
        ),
      )
      .prepare(),
  };
}

export function createSqliteRepository(db: SqliteDb): Repository {
  const insertKey = (tx: Pick<SqliteDb, 'insert'>, key: SigningKeyRecord) => tx.insert(signingKeys).values(key).run();
  const hot = prepareHotPath(db);
  // The two writes of the request path. Both run inside a group-commit batch (one transaction per
  // event-loop turn, a savepoint each), which also waits out another process's lock itself.
  const commit = groupCommit(db.$client);
  const insertSession = (session: SessionRecord, first: RefreshTokenRecord) => {
    hot.insertSession.run(asParams(session));
    hot.insertToken.run(asParams(first));
  };
  const consume = (parentJid: string, child: RefreshTokenRecord, now: number) => {
    if (hot.consume.run({ jid: parentJid, now }).changes !== 1) return false;
    hot.insertToken.run(asParams(child));
    return true;
  };
  // From here on, waiting for another process's lock is done by withBusyRetry (or the batch), without
  // blocking the event loop. (Preparing the statements above may itself wait, e.g. while another process is
  // migrating a fresh file, so that still used SQLite's own busy_timeout.)
  db.$client.pragma('busy_timeout = 0');

  return withBusyRetry<Repository>({
    async createApp(app, keys) {
      db.transaction((tx) => {
        const existing = tx.select({ appId: apps.appId }).from(apps).where(eq(apps.appId, app.appId)).get();
        if (existing) throw conflict(`app "${app.appId}" already exists`);
        tx.insert(apps).values(app).run();
        for (const key of keys) insertKey(tx, key);
      }, immediate);
    },

    async findApp(appId) {
      return hot.findApp.get({ appId });
    },

    async catalogVersion() {
      return hot.catalogVersion.get()?.version ?? 0;
    },

    async listApps() {
      return db.select().from(apps).orderBy(asc(apps.appId)).all();
    },

    async updateApp(appId, patch, now) {
      return db.update(apps).set({ ...patch, updatedAt: now }).where(eq(apps.appId, appId)).returning().get();
    },

    async listKeys(appId) {
      return hot.listKeys.all({ appId });
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
      await commit(() => insertSession(session, first));
    },

    async findRefreshToken(jid) {
      return hot.findRefreshToken.get({ jid });
    },

    async findChild(parentJid) {
      return hot.findChild.get({ parentJid });
    },

    async consumeRefreshToken(parentJid, child, now) {
      return commit(() => consume(parentJid, child, now));
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
      // One transaction per batch, repeated until a batch comes back short.
      const drain = (deleteBatch: (tx: Pick<SqliteDb, 'delete'>) => number) => {
        let total = 0;
        for (let n = PRUNE_BATCH; n === PRUNE_BATCH; total += n) n = db.transaction(deleteBatch, immediate);
        return total;
      };
      // A session's newest token is the only one never used (a token is marked used in the transaction
      // that stores its child), and the only one that can renew it: when an expired, never used token
      // goes, its session goes with it — found without an index of tokens by session (schema.ts).
      // A session past its absolute end has no unexpired token (exp is capped at the end), so the first
      // pass has already taken its tokens.
      let sessionsDeleted = 0;
      const refreshTokensDeleted = drain((tx) => {
        const gone = tx
          .delete(refreshTokens)
          .where(sql`${refreshTokens.jid} IN (SELECT ${refreshTokens.jid} FROM ${refreshTokens} WHERE ${refreshTokens.exp} <= ${nowSeconds} LIMIT ${PRUNE_BATCH})`)
          .returning({ sessionId: refreshTokens.sessionId, usedAt: refreshTokens.usedAt })
          .all();
        const finished = gone.filter((t) => t.usedAt === null).map((t) => t.sessionId);
        if (finished.length) sessionsDeleted += tx.delete(sessions).where(inArray(sessions.sessionId, finished)).run().changes;
        return gone.length;
      });
      sessionsDeleted += drain(
        (tx) =>
          tx
            .delete(sessions)
            .where(sql`${sessions.sessionId} IN (SELECT ${sessions.sessionId} FROM ${sessions} WHERE ${sessions.expiresAt} <= ${now} LIMIT ${PRUNE_BATCH})`)
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
  });
}
