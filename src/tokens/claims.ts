import { toSeconds } from '../clock.js';
import type { AppRecord, RefreshTokenRecord, SessionRecord } from '../storage/repository.js';

export interface AuthTokenClaims {
  iss: string;
  aud: string;
  sub: string;
  jid: string;
  iat: number;
  nbf: number;
  exp: number;
  ip: string;
  useragent: string;
  personal?: Record<string, unknown>;
}

export interface RefreshTokenClaims {
  iss: string;
  jid: string;
  iat: number;
  nbf: number;
  exp: number;
  type: 'refresh';
}

/** A refresh token row before its token is signed (and its digest known). */
export type NewRefreshToken = Omit<RefreshTokenRecord, 'tokenSha256'>;

/**
 * A refresh token row for a new token of the session issued at `issuedAt` (ms). Fields are copied
 * one by one: in Node 20's V8 every property written after a spread (`{ ...fields, nbf }`) takes a
 * slow path that makes a new hidden class each call — 1 µs per property, and garbage for the
 * old-generation collector.
 */
export function newRefreshToken<Parent extends string | null>(
  app: AppRecord,
  session: SessionRecord,
  { jid, parentJid, issuedAt, ip, useragent }: { jid: string; parentJid: Parent; issuedAt: number; ip: string; useragent: string },
): NewRefreshToken & { parentJid: Parent } {
  const iat = toSeconds(issuedAt);
  return {
    jid,
    parentJid,
    iat,
    ip,
    useragent,
    sessionId: session.sessionId,
    nbf: iat + app.refreshNbfSeconds,
    // Each renew starts a new idle timeout, but never past the session's absolute end.
    exp: Math.min(iat + app.refreshTtlSeconds, toSeconds(session.expiresAt)),
    issuedAt,
  };
}

/** The claims of both tokens of a pair, derived only from stored rows so a retry re-signs the same claims. */
export function pairClaims(
  app: AppRecord,
  session: SessionRecord,
  token: NewRefreshToken,
): { auth: AuthTokenClaims; refresh: RefreshTokenClaims } {
  const auth: AuthTokenClaims = {
    iss: app.appId,
    aud: app.audience,
    sub: session.sub,
    jid: token.jid,
    iat: token.iat,
    nbf: token.iat,
    exp: token.iat + app.accessTtlSeconds,
    ip: token.ip,
    useragent: token.useragent,
  };
  if (session.personal !== null) auth.personal = JSON.parse(session.personal) as Record<string, unknown>;
  return {
    auth,
    refresh: { iss: app.appId, jid: token.jid, iat: token.iat, nbf: token.nbf, exp: token.exp, type: 'refresh' },
  };
}
