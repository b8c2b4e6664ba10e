// tokenmint/hono — session middleware for an app's own hono backend: the browser holds the tokens in
// HttpOnly cookies, the backend talks to tokenmint with its app key (tokenmint/client) and verifies
// auth tokens locally with the app's JWKS (tokenmint/verify).
import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { createMiddleware } from 'hono/factory';
import { InvalidRefreshTokenError, type TokenmintClient, type TokenPair } from './client.js';
import { verifyAuthToken, type AuthTokenClaims } from './verify.js';

export type { AuthTokenClaims };

export interface SessionOptions {
  client: TokenmintClient;
  /** The app's id (the tokens' `iss`) and audience (`aud`). */
  appId: string;
  audience: string;
  /** `<tokenmint>/app/<app_id>/jwks.json`. */
  jwksUrl: string;
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

const unauthorized = (c: Context) => c.json({ message: 'not logged in' }, 401);

export function tokenmintSession(options: SessionOptions) {
  const { client, appId, audience, jwksUrl, trustProxyHeader } = options;
  const accessName = options.cookies?.accessName ?? 'access_token';
  const refreshName = options.cookies?.refreshName ?? 'refresh_token';
  const cookieBase = { httpOnly: true, secure: options.cookies?.secure ?? true, sameSite: options.cookies?.sameSite ?? 'Lax', path: options.cookies?.path ?? '/' } as const;

  const user = (c: Context) => {
    const forwarded = trustProxyHeader ? c.req.header(trustProxyHeader)?.split(',').pop()?.trim() : undefined;
    const socket = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming?.socket?.remoteAddress;
    return { ip: (forwarded || socket || '127.0.0.1').replace(/^::ffff:/, ''), useragent: c.req.header('user-agent') || 'unknown' };
  };

  /** Each cookie lives exactly as long as its token: Max-Age from the token's own `exp`. */
  const setPair = (c: Context, pair: TokenPair) => {
    const now = Math.floor(Date.now() / 1000);
    for (const [name, token] of [
      [accessName, pair.auth_token],
      [refreshName, pair.refresh_token],
    ] as const) {
      const { exp } = JSON.parse(atob(token.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/'))) as { exp: number };
      setCookie(c, name, token, { ...cookieBase, maxAge: Math.max(0, exp - now) });
    }
  };

  const clear = (c: Context) => {
    deleteCookie(c, accessName, cookieBase);
    deleteCookie(c, refreshName, cookieBase);
  };

  const verify = (token: string) => verifyAuthToken(token, { appId, audience, jwksUrl }).catch(() => undefined);

  return {
    /** Starts a session for a user your backend has just authenticated, and sets both cookies. */
    async login(c: Context, input: { sub: string; personal?: Record<string, unknown> }): Promise<AuthTokenClaims> {
      const pair = await client.issue({ ...input, ...user(c) });
      setPair(c, pair);
      return (await verify(pair.auth_token))!;
    },

    /** Revokes the session (if any) and clears both cookies. */
    async logout(c: Context): Promise<void> {
      const refresh = getCookie(c, refreshName);
      if (refresh) await client.revoke(refresh);
      clear(c);
    },

    /**
     * Requires a session: the verified auth-token claims go to `c.get('session')`. When the access
     * cookie is missing or no longer verifies but a refresh cookie is there, renews (one request per
     * refresh token in this process), sets the new cookies and carries on; a refresh token that
     * cannot renew clears the cookies and answers 401.
     */
    session(): MiddlewareHandler<{ Variables: SessionVariables }> {
      return createMiddleware<{ Variables: SessionVariables }>(async (c, next) => {
        const access = getCookie(c, accessName);
        let claims = access ? await verify(access) : undefined;
        if (!claims) {
          const refresh = getCookie(c, refreshName);
          if (!refresh) return unauthorized(c);
          let pair: TokenPair;
          try {
            pair = await client.renew({ refresh_token: refresh, ...user(c) });
          } catch (error) {
            if (!(error instanceof InvalidRefreshTokenError)) throw error;
            clear(c);
            return unauthorized(c);
          }
          setPair(c, pair);
          claims = await verify(pair.auth_token);
          if (!claims) return unauthorized(c);
        }
        c.set('session', claims);
        return next();
      });
    },
  };
}
