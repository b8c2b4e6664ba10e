// tokenmint/hono — session middleware for an app's own hono backend: the browser holds the tokens in
// HttpOnly cookies, the backend talks to tokenmint with its app key (tokenmint/client) and verifies
// auth tokens locally with the app's JWKS (tokenmint/verify).
import { isIP } from 'node:net';
import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { createMiddleware } from 'hono/factory';
import { decodeJwt } from 'jose';
import { APP_ID_RULE, isAppId } from './apps/app-id.js';
import { InvalidRefreshTokenError, type SessionInfo, type TokenmintClient, type TokenPair } from './client.js';
import { clientAddress } from './http/client-address.js';
import { verifyAuthToken, type AuthTokenClaims } from './verify.js';

export type { AuthTokenClaims };

export interface SessionOptions {
  client: TokenmintClient;
  /** The app's id (the tokens' `iss`) and audience (`aud`). */
  appId: string;
  audience: string;
  /** `<tokenmint>/app/<app_id>/jwks.json`. */
  jwksUrl: string;
  /** How long the JWKS is cached, in seconds, instead of the max-age its answers give (the server's JWKS_MAX_AGE_SECONDS). */
  jwksMaxAgeSeconds?: number;
  cookies?: {
    /** Default `access_token` and `refresh_token`. */
    accessName?: string;
    refreshName?: string;
    /** Default true. Switch off only for http://localhost development. */
    secure?: boolean;
    /** Default `Lax`. */
    sameSite?: 'Strict' | 'Lax' | 'None';
    /** Default `/`. */
    path?: string;
  };
  /** A header your reverse proxy sets with the client address (its last entry is used); else the socket. */
  trustProxyHeader?: string;
}

/** What `session()` puts in the context: `c.get('session')`. */
export interface SessionVariables {
  session: AuthTokenClaims;
}

/** The longest `useragent` tokenmint accepts (contract §3). */
const MAX_USERAGENT_CHARS = 1024;
/** The largest cookie browsers keep, name and value (RFC 6265 §6.1 asks for at least this); a larger one is dropped silently. */
const MAX_COOKIE_BYTES = 4096;

/**
 * An address as tokenmint takes it: without an IPv4-mapped prefix (`::ffff:1.2.3.4`), a port or a
 * zone, which some proxies write into their forwarded header (`1.2.3.4:4711`, `[2001:db8::1]:443`,
 * `fe80::1%eth0`).
 */
const plainIp = (address: string) =>
  address
    .replace(/^\[([^\]]+)\](?::\d+)?$/, '$1')
    .replace(/^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/, '$1')
    .replace(/^::ffff:(?=\d{1,3}(?:\.\d{1,3}){3}$)/i, '')
    .replace(/%.*$/, '');

const unauthorized = (c: Context) => c.json({ message: 'not logged in' }, 401);

/**
 * What jose rejects a token itself with: malformed, another algorithm or an unsupported header, a
 * bad signature, no key of that kid, expired, other claims. Anything else — the JWKS unreachable,
 * answered with a 5xx or 429, timed out or not a key set — is about fetching the keys, not the token.
 */
const TOKEN_REFUSALS = new Set([
  'ERR_JWS_INVALID',
  'ERR_JWT_INVALID',
  'ERR_JOSE_ALG_NOT_ALLOWED',
  'ERR_JOSE_NOT_SUPPORTED',
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS',
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
]);
const isTokenRefusal = (error: unknown) => error instanceof Error && TOKEN_REFUSALS.has((error as { code?: unknown }).code as string);

export function tokenmintSession(options: SessionOptions) {
  // Misuse is a TypeError now, not every request taken as logged out (verifyCookie takes the verifier's refusals so).
  for (const name of ['appId', 'audience', 'jwksUrl'] as const) {
    if (typeof options[name] !== 'string' || options[name] === '') throw new TypeError(`tokenmintSession: ${name} must be a non-empty string`);
  }
  if (!isAppId(options.appId)) throw new TypeError(`tokenmintSession: appId must be ${APP_ID_RULE}, not ${JSON.stringify(options.appId)}`);
  const { client, appId, audience, jwksUrl, jwksMaxAgeSeconds, trustProxyHeader } = options;
  if (jwksMaxAgeSeconds !== undefined && !(typeof jwksMaxAgeSeconds === 'number' && Number.isFinite(jwksMaxAgeSeconds) && jwksMaxAgeSeconds > 0)) {
    throw new TypeError('tokenmintSession: jwksMaxAgeSeconds must be a number of seconds above 0');
  }
  const accessName = options.cookies?.accessName ?? 'access_token';
  const refreshName = options.cookies?.refreshName ?? 'refresh_token';
  const cookieBase = { httpOnly: true, secure: options.cookies?.secure ?? true, sameSite: options.cookies?.sameSite ?? 'Lax', path: options.cookies?.path ?? '/' } as const;

  // tokenmint wants a plain IP and a user agent of at most 1,024 characters: a longer one is cut, and
  // a forwarded value that is no IP (a proxy may write "unknown") gives way to the socket's address
  // (loopback when there is none: tests), rather than failing the login.
  const user = (c: Context) => {
    const useragent = (c.req.header('user-agent') || 'unknown').slice(0, MAX_USERAGENT_CHARS);
    const ip = [clientAddress(c, trustProxyHeader), clientAddress(c, undefined)].map(plainIp).find((address) => isIP(address) !== 0);
    return { ip: ip ?? '127.0.0.1', useragent };
  };

  /** Ends a session nobody holds any more; if tokenmint cannot be reached, it ends at its idle timeout. */
  const endSession = (refreshToken: string) => client.revoke(refreshToken).catch(() => undefined);

  /**
   * Each cookie lives exactly as long as its token: Max-Age from the token's own `exp`. A token too
   * large for a cookie (a big `personal`) throws rather than leave a browser that drops it logged out,
   * and ends its session first: nobody can hold it. Left live, it would be listed among the user's
   * devices (and count against --max-sessions); after a renew, the browser would send its used refresh
   * token again until reuse detection ended the session as a theft.
   */
  const setPair = async (c: Context, pair: TokenPair) => {
    const now = Math.floor(Date.now() / 1000);
    const cookies = [
      [accessName, pair.auth_token],
      [refreshName, pair.refresh_token],
    ] as const;
    for (const [name, token] of cookies) {
      const bytes = name.length + 1 + token.length;
      if (bytes > MAX_COOKIE_BYTES) {
        await endSession(pair.refresh_token);
        throw new Error(`tokenmint/hono: the ${name} cookie would be ${bytes} bytes, over the ${MAX_COOKIE_BYTES} a browser keeps; make the session's personal claims smaller`);
      }
    }
    for (const [name, token] of cookies) setCookie(c, name, token, { ...cookieBase, maxAge: Math.max(0, (decodeJwt(token).exp ?? now) - now) });
  };

  const clear = (c: Context) => {
    deleteCookie(c, accessName, cookieBase);
    deleteCookie(c, refreshName, cookieBase);
  };

  const verifyOptions = { appId, audience, jwksUrl, jwksMaxAgeSeconds };
  /**
   * The claims of a token from a cookie, or undefined when it does not verify (expired, forged, ...).
   * A JWKS that could not be fetched says nothing of the token: that throws, as a renew that cannot
   * reach tokenmint does, rather than take the user as logged out and renew on every request.
   */
  const verifyCookie = (token: string) =>
    verifyAuthToken(token, verifyOptions).catch((error: unknown) => {
      if (isTokenRefusal(error)) return undefined;
      throw error;
    });

  const accessClaims = (c: Context) => {
    const access = getCookie(c, accessName);
    return access ? verifyCookie(access) : undefined;
  };

  /** Renews from the refresh cookie and sets the new pair; clears both cookies when it cannot. */
  const renewFromCookie = async (c: Context): Promise<AuthTokenClaims | undefined> => {
    const refresh = getCookie(c, refreshName);
    if (!refresh) return undefined;
    let pair: TokenPair;
    try {
      pair = await client.renew({ refresh_token: refresh, ...user(c) });
    } catch (error) {
      if (!(error instanceof InvalidRefreshTokenError)) throw error;
      clear(c);
      return undefined;
    }
    await setPair(c, pair);
    return verifyCookie(pair.auth_token);
  };

  return {
    /**
     * Starts a session for a user your backend has just authenticated, and sets both cookies. The
     * session of the refresh cookie it replaces, if any, ends: only this browser held it.
     */
    async login(c: Context, input: { sub: string; personal?: Record<string, unknown> }): Promise<AuthTokenClaims> {
      const replaced = getCookie(c, refreshName);
      const pair = await client.issue({ ...input, ...user(c) });
      await setPair(c, pair);
      if (replaced) await endSession(replaced);
      return verifyAuthToken(pair.auth_token, verifyOptions);
    },

    /** Revokes the session (if any) and clears both cookies — cleared even when tokenmint is unreachable (then it throws). */
    async logout(c: Context): Promise<void> {
      const refresh = getCookie(c, refreshName);
      clear(c);
      if (refresh) await client.revoke(refresh);
    },

    /**
     * For the browser's refresh route (fetchWithRefresh's `refreshUrl`): renews from the refresh
     * cookie and sets both cookies. While the access cookie still verifies there is nothing to renew
     * (another tab has just refreshed): it resolves to those claims and leaves the cookies be.
     * Resolves to undefined — after clearing the cookies — when the refresh token cannot renew; throws
     * when tokenmint or the JWKS cannot be reached (not a logout).
     */
    async refresh(c: Context): Promise<AuthTokenClaims | undefined> {
      return (await accessClaims(c)) ?? renewFromCookie(c);
    },

    /**
     * The user's live sessions ("your devices"), newest first, this browser's marked `current` (by its
     * refresh cookie). For a route behind `session()`; end one with `client.revokeSession(sub, id)`.
     */
    devices(c: Context<{ Variables: SessionVariables }>): Promise<SessionInfo[]> {
      return client.sessions(c.get('session').sub, { refreshToken: getCookie(c, refreshName) });
    },

    /**
     * Ends the user's other sessions ("log out everywhere else", a password change), keeping this
     * browser's (by its refresh cookie); resolves to how many ended. For a route behind `session()`.
     * Without a refresh cookie it throws InvalidRefreshTokenError and ends nothing: it cannot tell
     * which session to keep.
     */
    async logoutOthers(c: Context<{ Variables: SessionVariables }>): Promise<number> {
      const refresh = getCookie(c, refreshName);
      if (!refresh) throw new InvalidRefreshTokenError(401);
      return client.revokeSubject(c.get('session').sub, { exceptRefreshToken: refresh });
    },

    /**
     * Requires a session: the verified auth-token claims go to `c.get('session')`. When the access
     * cookie is missing or no longer verifies but a refresh cookie is there, renews (one request per
     * refresh token in this process), sets the new cookies and carries on; a refresh token that
     * cannot renew clears the cookies and answers 401. With `{ renew: false }` it answers 401 at once
     * instead, and leaves renewing to the page (fetchWithRefresh and a `refresh` route). Throws when
     * tokenmint or the JWKS cannot be reached: an error for the app to answer, not a logout.
     */
    session({ renew = true }: { renew?: boolean } = {}): MiddlewareHandler<{ Variables: SessionVariables }> {
      return createMiddleware<{ Variables: SessionVariables }>(async (c, next) => {
        const claims = (await accessClaims(c)) ?? (renew ? await renewFromCookie(c) : undefined);
        if (!claims) return unauthorized(c);
        c.set('session', claims);
        return next();
      });
    },
  };
}
