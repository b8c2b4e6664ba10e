import { newUlid } from '../ids.js';
import type { AuditLog } from '../audit.js';
import type { Clock } from '../clock.js';
import { invalidRefreshToken, isSigningKeyRevoked, TokenmintError } from '../errors.js';
import type { Keyring } from '../keyring/keyring.js';
import type { AppRecord, RefreshToken, RefreshTokenRecord, Repository, RevokeReason, SessionFilter, SessionListing, SessionRecord } from '../storage/repository.js';
import { newRefreshToken, pairClaims, type NewRefreshToken } from './claims.js';
import { checkRefreshClaims, decodeRefreshToken, isAuthentic, signJwt, tokenDigest } from './jwt.js';

export interface TokenPair {
  auth_token: string;
  refresh_token: string;
  key_id: string;
  public_key: string;
}

export interface Client {
  ip: string;
  useragent: string;
}

export type SessionService = ReturnType<typeof createSessionService>;

/** A filter that names no subject and no session: every session of the app. */
const namesAll = (filter: SessionFilter) => filter.sub === undefined && filter.sessionId === undefined;

/** `token`, signed as `signed`, made the row to store by adding its digest in place (a spread would cost a new hidden class per call: see newRefreshToken). */
const withDigest = <T extends NewRefreshToken>(token: T, signed: string): T & RefreshTokenRecord => Object.assign(token, { tokenSha256: tokenDigest(signed) });

/** How many times a pair is signed while its key keeps being revoked before it is stored: three revocations in a row are an outage, not a race. */
const SIGNING_ATTEMPTS = 3;

/** A page of devices, not a dump: a subject whose client logs in on every call can have thousands. */
const LIVE_SESSIONS_LISTED = 100;

/** A refresh token that does not authenticate marks nothing; a storage failure is still one. */
const notGenuine = (error: unknown): undefined => {
  if (error instanceof TokenmintError) return undefined;
  throw error;
};

export function createSessionService({ repo, keyring, clock, audit }: { repo: Repository; keyring: Keyring; clock: Clock; audit: AuditLog }) {
  /**
   * Authenticates a refresh token of `app` and loads its row (undefined if its jid is unknown): the
   * header, a key of this app that may verify now (a revoked one is a security event worth
   * recording, with the id of the request that presented it), then the stored digest or the
   * signature, then the claims.
   */
  async function authenticate(app: AppRecord, token: string, options: { now: number; checkTimes: boolean; requestId: string | undefined }) {
    const jws = decodeRefreshToken(token);
    const key = await keyring.verificationKey(app, jws.kid);
    if ('refused' in key) {
      if (key.refused === 'revoked kid') await audit.record('security.revoked_key_presented', { appId: app.appId, kid: jws.kid, requestId: options.requestId });
      throw invalidRefreshToken(key.refused);
    }
    const found = typeof jws.payload.jid === 'string' ? await repo.findRefreshToken(jws.payload.jid) : undefined;
    if (!isAuthentic(jws, key, found?.token.tokenSha256)) throw invalidRefreshToken('bad signature');
    checkRefreshClaims(jws.payload, app, options);
    return found;
  }

  /** Revokes the live sessions `filter` names (all of the app's when it names none) and records it. */
  async function revokeSessions(appId: string, filter: SessionFilter, reason: RevokeReason): Promise<number> {
    const revoked = await repo.revokeSessions(appId, filter, reason, clock());
    const kept = filter.exceptSessionId === undefined ? {} : { kept_session_id: filter.exceptSessionId };
    await audit.record('session.revoked', { appId, sub: filter.sub, sessionId: filter.sessionId, detail: { all: namesAll(filter), count: revoked, ...kept } });
    return revoked;
  }

  /** Signs both tokens for a refresh token row with the app's current key. */
  async function signPair(app: AppRecord, session: SessionRecord, token: NewRefreshToken): Promise<TokenPair> {
    const signer = await keyring.signer(app.appId);
    const claims = pairClaims(app, session, token);
    return { auth_token: signJwt(claims.auth, signer), refresh_token: signJwt(claims.refresh, signer), key_id: signer.kid, public_key: signer.publicKeyBase64 };
  }

  /**
   * Signs `token`'s pair with the app's current key and stores it with `store` (for a repeat, which
   * stores nothing, only checks), which refuses a pair whose key was revoked meanwhile (`key revoke`,
   * an emergency): then signs again with the key that took over, rather than answer tokens that are
   * refused from their first use.
   */
  async function signAndStore<Row extends NewRefreshToken, T>(
    app: AppRecord,
    session: SessionRecord,
    token: Row,
    store: (row: Row & RefreshTokenRecord, signedBy: string) => Promise<T>,
  ): Promise<{ pair: TokenPair; stored: T }> {
    for (let attempt = 1; ; attempt++) {
      const pair = await signPair(app, session, token);
      try {
        return { pair, stored: await store(withDigest(token, pair.refresh_token), pair.key_id) };
      } catch (error) {
        if (!isSigningKeyRevoked(error) || attempt === SIGNING_ATTEMPTS) throw error;
      }
    }
  }

  /** Refuses a stored token that cannot renew. */
  function live(app: AppRecord, found: RefreshToken | undefined, now: number) {
    if (!found) throw invalidRefreshToken('unknown jid');
    if (found.session.appId !== app.appId) throw invalidRefreshToken('session of another app');
    if (found.session.revokedAt !== null) throw invalidRefreshToken(`session revoked (${found.session.revokeReason})`);
    if (found.session.expiresAt <= now) throw invalidRefreshToken('session lifetime over');
    return found;
  }

  return {
    /**
     * Starts a session: a new pair for a user the backend has logged in. With `issueKey` (the call's
     * Idempotency-Key), a repeat of the call replaces the session of the attempt whose answer was lost.
     * Under the app's max-sessions, the subject's oldest live sessions beyond it end as this one starts.
     */
    async issue(app: AppRecord, input: Client & { sub: string; personal?: Record<string, unknown> }, issueKey?: string): Promise<TokenPair> {
      const now = clock();
      const session: SessionRecord = {
        sessionId: newUlid(now),
        appId: app.appId,
        sub: input.sub,
        personal: input.personal === undefined ? null : JSON.stringify(input.personal),
        createdAt: now,
        expiresAt: now + app.sessionTtlSeconds * 1000,
        revokedAt: null,
        revokeReason: null,
      };
      // The first token's jid is the session's id: whether a session was renewed is then found by the
      // unique parent_jid index (an Idempotency-Key's repeat asks), with no index of tokens by session.
      const first = newRefreshToken(app, session, { jid: session.sessionId, parentJid: null, issuedAt: now, ip: input.ip, useragent: input.useragent });
      const maxLiveSessions = app.maxSessions > 0 ? app.maxSessions : undefined;
      const { pair } = await signAndStore(app, session, first, (row, signedBy) => repo.createSession(session, row, { issueKey, maxLiveSessions, signedBy }));
      return pair;
    },

    /**
     * Rotates a refresh token (RFC 9700 §4.14.2): the first use stores its one child, which is what
     * makes it used; a repeat within reuse-grace of that moment gets that same child again; a repeat
     * after it is reuse, and the whole session is revoked. The pair is signed first and answered only
     * after the commit; a crash after the commit is healed by the client's retry within the grace window.
     */
    async renew(app: AppRecord, input: Client & { refresh_token: string }, requestId?: string): Promise<TokenPair> {
      const now = clock();
      const found = await authenticate(app, input.refresh_token, { now, checkTimes: true, requestId });
      let { token, session, child } = live(app, found, now);

      if (child === null) {
        const next = newRefreshToken(app, session, { jid: newUlid(now), parentJid: token.jid, issuedAt: now, ip: input.ip, useragent: input.useragent });
        const { pair, stored } = await signAndStore(app, session, next, (row, signedBy) => repo.consumeRefreshToken(row, signedBy));
        if (stored) return pair;
        // Another request (here or in another process) used it first: read it again, as a repeat.
        ({ token, session, child } = live(app, await repo.findRefreshToken(token.jid), now));
      }

      if (child !== null && now - child.issuedAt <= app.reuseGraceSeconds * 1000) {
        // A repeat stores nothing: its key is checked after signing instead, as a write checks it.
        return (await signAndStore(app, session, child, (_row, signedBy) => repo.refuseRevokedKey(signedBy))).pair;
      }
      await repo.revokeSession(session.sessionId, 'reuse', now);
      await audit.record('security.refresh_reuse', { appId: app.appId, sessionId: session.sessionId, sub: session.sub, requestId, detail: { jid: token.jid } });
      throw invalidRefreshToken('reuse after grace: session revoked');
    },

    /**
     * Ends the session of a refresh token. Answers the same for unknown or dead tokens (RFC 7009),
     * and ignores nbf/exp so a user can log out right after logging in.
     */
    async revoke(app: AppRecord, refreshToken: string, requestId?: string): Promise<{ revoked: boolean; reason?: string }> {
      const now = clock();
      try {
        const found = await authenticate(app, refreshToken, { now, checkTimes: false, requestId });
        if (!found || found.session.appId !== app.appId) return { revoked: false, reason: 'unknown jid' };
        await repo.revokeSession(found.session.sessionId, 'client', now);
        return { revoked: true };
      } catch (error) {
        if (error instanceof TokenmintError) return { revoked: false, reason: error.reason };
        throw error;
      }
    },

    /**
     * Every live session of one subject, for the app's backend (a password change, "log out
     * everywhere"); the same as `session revoke --sub`, recorded as the client's. With
     * `exceptRefreshToken`, all but the session of that token ("log out everywhere else"), which must
     * be a genuine token of this app and subject, live or not: anything else is refused (401) and ends
     * nothing, since ending every session would log out the one the caller meant to keep.
     */
    async revokeSubject(app: AppRecord, sub: string, options: { exceptRefreshToken?: string; requestId?: string } = {}): Promise<number> {
      if (options.exceptRefreshToken === undefined) return revokeSessions(app.appId, { sub }, 'client');
      const found = await authenticate(app, options.exceptRefreshToken, { now: clock(), checkTimes: false, requestId: options.requestId });
      if (!found) throw invalidRefreshToken('unknown jid');
      if (found.session.appId !== app.appId) throw invalidRefreshToken('session of another app');
      if (found.session.sub !== sub) throw invalidRefreshToken('session of another subject');
      return revokeSessions(app.appId, { sub, exceptSessionId: found.session.sessionId }, 'client');
    },

    /**
     * The live sessions of one subject, newest first and at most LIVE_SESSIONS_LISTED of them, for the
     * app's backend ("your devices"); the one `refreshToken` belongs to, if given and genuine, is marked
     * current (and listed last if it is older than those). A session whose refresh idle timeout has passed is listed until pruning deletes it
     * (there is no index of tokens by session to tell it apart sooner).
     */
    async liveSessions(app: AppRecord, sub: string, refreshToken?: string, requestId?: string): Promise<Array<SessionListing & { current: boolean }>> {
      const now = clock();
      const found = refreshToken === undefined ? undefined : await authenticate(app, refreshToken, { now, checkTimes: false, requestId }).catch(notGenuine);
      const current = found?.session.sessionId;
      // This device is always there, if it is one of the subject's live sessions.
      const listed = await repo.listLiveSessions(app.appId, sub, now, { limit: LIVE_SESSIONS_LISTED, include: current });
      return listed.map((s) => Object.assign(s, { current: s.sessionId === current }));
    },

    /**
     * New `personal` claims (null: none) for every live session of a subject, from their next renew
     * on (a user renamed); auth tokens already issued keep theirs until they expire. Resolves to how
     * many sessions.
     */
    updatePersonal(app: AppRecord, sub: string, personal: Record<string, unknown> | null): Promise<number> {
      return repo.updatePersonal(app.appId, sub, personal === null ? null : JSON.stringify(personal), clock());
    },

    /** One live session of a subject, ended by the app's backend ("log out that device"); 0 or 1. */
    revokeSession(app: AppRecord, sub: string, sessionId: string): Promise<number> {
      return revokeSessions(app.appId, { sub, sessionId }, 'client');
    },

    /** `session revoke`: every live session of one subject, one session, or every session of the app. */
    revokeSessions(appId: string, filter: SessionFilter): Promise<number> {
      return revokeSessions(appId, filter, namesAll(filter) ? 'admin-all' : 'admin');
    },

    /** `session list`: the stored sessions of one subject, newest first. */
    listSessions(appId: string, sub: string) {
      return repo.listSessions(appId, sub);
    },
  };
}
