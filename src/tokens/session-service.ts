import { decodeProtectedHeader } from 'jose';
import { ulid } from 'ulid';
import type { AuditLog } from '../audit.js';
import { toSeconds, type Clock } from '../clock.js';
import { invalidRefreshToken, TokenmintError } from '../errors.js';
import type { Keyring } from '../keyring/keyring.js';
import type { AppRecord, RefreshTokenRecord, Repository, SessionRecord } from '../storage/repository.js';
import { newRefreshToken, pairClaims } from './claims.js';
import { signJwt, verifyRefreshToken } from './jwt.js';

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

export function createSessionService({ repo, keyring, clock, audit }: { repo: Repository; keyring: Keyring; clock: Clock; audit: AuditLog }) {
  /** Verifies a refresh token; a token of a revoked key is a security event worth recording. */
  async function verify(app: AppRecord, token: string, options: { now: number; checkTimes: boolean }) {
    try {
      return await verifyRefreshToken(token, app, keyring, options);
    } catch (error) {
      if (error instanceof TokenmintError && error.reason === 'revoked kid') {
        await audit.record('security.revoked_key_presented', { appId: app.appId, kid: String(decodeProtectedHeader(token).kid) });
      }
      throw error;
    }
  }

  /** Signs both tokens for a stored refresh token with the app's current key. */
  async function signPair(app: AppRecord, session: SessionRecord, token: RefreshTokenRecord): Promise<TokenPair> {
    const signer = await keyring.signer(app.appId);
    const claims = pairClaims(app, session, token);
    const [authToken, refreshToken] = await Promise.all([signJwt(claims.auth, signer), signJwt(claims.refresh, signer)]);
    return { auth_token: authToken, refresh_token: refreshToken, key_id: signer.kid, public_key: signer.publicKeyBase64 };
  }

  /** Loads a verified token's row and session, refusing anything that cannot renew. */
  async function liveToken(app: AppRecord, jid: string, now: number) {
    const found = await repo.findRefreshToken(jid);
    if (!found) throw invalidRefreshToken('unknown jid');
    if (found.session.appId !== app.appId) throw invalidRefreshToken('session of another app');
    if (found.session.revokedAt !== null) throw invalidRefreshToken(`session revoked (${found.session.revokeReason})`);
    if (found.session.expiresAt <= now) throw invalidRefreshToken('session lifetime over');
    return found;
  }

  return {
    /** Starts a session: a new pair for a user the backend has logged in. */
    async issue(app: AppRecord, input: Client & { sub: string; personal?: Record<string, unknown> }): Promise<TokenPair> {
      const now = clock();
      const session: SessionRecord = {
        sessionId: ulid(now),
        appId: app.appId,
        sub: input.sub,
        personal: input.personal === undefined ? null : JSON.stringify(input.personal),
        createdAt: now,
        expiresAt: now + app.sessionTtlSeconds * 1000,
        revokedAt: null,
        revokeReason: null,
      };
      const first = newRefreshToken(app, session, { jid: ulid(now), parentJid: null, iat: toSeconds(now), ip: input.ip, useragent: input.useragent });
      await repo.createSession(session, first);
      return signPair(app, session, first);
    },

    /**
     * Rotates a refresh token (RFC 9700 §4.14.2): the first use marks it used and creates its one
     * child; a repeat within reuse-grace gets that same child again; a repeat after it is reuse, and
     * the whole session is revoked. The row is written before anything is signed, so a crash after
     * the commit is healed by the client's retry within the grace window.
     */
    async renew(app: AppRecord, input: Client & { refresh_token: string }): Promise<TokenPair> {
      const now = clock();
      const claims = await verify(app, input.refresh_token, { now, checkTimes: true });
      const { token, session } = await liveToken(app, claims.jid, now);

      if (token.usedAt === null) {
        const child = newRefreshToken(app, session, { jid: ulid(now), parentJid: token.jid, iat: toSeconds(now), ip: input.ip, useragent: input.useragent });
        if (await repo.consumeRefreshToken(token.jid, child, now)) return signPair(app, session, child);
        // Another request (here or in another process) consumed it first: answer as a repeat.
      }

      const { token: used, session: current } = await liveToken(app, claims.jid, now);
      const child = await repo.findChild(used.jid);
      if (used.usedAt !== null && child && now - used.usedAt <= app.reuseGraceSeconds * 1000) {
        return signPair(app, current, child);
      }
      await repo.revokeSession(session.sessionId, 'reuse', now);
      await audit.record('security.refresh_reuse', { appId: app.appId, sessionId: session.sessionId, sub: session.sub, detail: { jid: used.jid } });
      throw invalidRefreshToken('reuse after grace: session revoked');
    },

    /**
     * Ends the session of a refresh token. Answers the same for unknown or dead tokens (RFC 7009),
     * and ignores nbf/exp so a user can log out right after logging in.
     */
    async revoke(app: AppRecord, refreshToken: string): Promise<{ revoked: boolean; reason?: string }> {
      const now = clock();
      try {
        const claims = await verify(app, refreshToken, { now, checkTimes: false });
        const found = await repo.findRefreshToken(claims.jid);
        if (!found || found.session.appId !== app.appId) return { revoked: false, reason: 'unknown jid' };
        await repo.revokeSession(found.session.sessionId, 'client', now);
        return { revoked: true };
      } catch (error) {
        if (error instanceof TokenmintError) return { revoked: false, reason: error.reason };
        throw error;
      }
    },

    /** `session revoke`: every live session of one subject, or of the whole app. */
    async revokeSessions(appId: string, filter: { sub?: string }): Promise<number> {
      const revoked = await repo.revokeSessions(appId, filter, filter.sub === undefined ? 'admin-all' : 'admin', clock());
      await audit.record('session.revoked', { appId, sub: filter.sub, detail: { all: filter.sub === undefined, count: revoked } });
      return revoked;
    },
  };
}
