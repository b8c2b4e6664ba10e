// tokenmint/verify — for consumers: a frontend or backend checking an auth token. Runs unchanged in
// Node and in browsers (jose and Web APIs only; no Node built-ins). A page may serve this one file as
// it is beside jose (README, Verifying tokens), so it imports no module of ours but types.
import {
  createRemoteJWKSet,
  customFetch,
  errors,
  importSPKI,
  jwksCache,
  jwtVerify,
  type CryptoKey,
  type JWKSCacheInput,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from 'jose';
import type { AuthTokenClaims } from './tokens/claims.js';

export type { AuthTokenClaims };

interface CommonOptions {
  /** The app's id: the token's `iss`. */
  appId: string;
  /** The app's audience (`--audience`, default "web-app"): the token's `aud`. */
  audience: string;
  /** Seconds of clock skew to allow on exp and nbf (default 0), on top of NBF_LEEWAY_SECONDS for nbf. */
  clockTolerance?: number;
}

export type VerifyAuthTokenOptions = CommonOptions &
  (
    | {
        /** `https://…/app/<app_id>/jwks.json`; fetched once, then cached for the max-age its answer gives. */
        jwksUrl: string | URL;
        /**
         * How long the fetched JWKS is trusted, in seconds, whatever its answer's `Cache-Control` says
         * (by default, that max-age: the server's JWKS_MAX_AGE_SECONDS).
         */
        jwksMaxAgeSeconds?: number;
        publicKey?: never;
      }
    | {
        /** `public_key` of a token pair: base64 of the key's SPKI PEM. */
        publicKey: string;
        jwksUrl?: never;
        jwksMaxAgeSeconds?: never;
      }
  );

/**
 * How long a fetched JWKS is trusted before it is fetched again when its answer gives no max-age:
 * the server's default `JWKS_MAX_AGE_SECONDS`. A max-age is taken within 1 s (so that `no-store`
 * does not cost a fetch per verification) and a day (the server's own cap). An unknown kid also
 * triggers a refetch (at most every 30 s).
 */
export const JWKS_CACHE_MAX_AGE_MS = 300_000;
const FOLLOWED_MAX_AGE_MS = { min: 1000, max: 86_400_000 };

/**
 * A fresh token's nbf is the second tokenmint signed it, so a verifier whose clock runs even a few ms
 * behind tokenmint's would refuse it now and then. nbf only keeps tokens from being used before they
 * were issued, and only tokenmint can sign one, so it is taken this much early; exp stays exact.
 */
export const NBF_LEEWAY_SECONDS = 60;

// One remote key set per URL (and cache lifetime), so every call shares its cache; imported PEM keys likewise.
const remoteKeySets = new Map<string, JWTVerifyGetKey>();
const importedKeys = new Map<string, Promise<CryptoKey>>();

/** How long an answer may be cached, in ms: its `Cache-Control` max-age less its `Age` (time spent in a shared cache on the way); undefined if it gives none. */
function freshFor(headers: Headers): number | undefined {
  const directives = (headers.get('cache-control') ?? '').toLowerCase().split(',').map((d) => d.trim());
  const maxAge = directives.includes('no-store') || directives.includes('no-cache') ? '0' : directives.map((d) => /^max-age="?(\d+)"?$/.exec(d)?.[1]).find((v) => v !== undefined);
  if (maxAge === undefined) return undefined;
  const age = Math.max(0, Number(headers.get('age')) || 0);
  return Math.min(FOLLOWED_MAX_AGE_MS.max, Math.max(FOLLOWED_MAX_AGE_MS.min, (Number(maxAge) - age) * 1000));
}

/**
 * A remote key set trusted for `fixedMaxAgeMs`, or else for the max-age each of its answers gives
 * (jose's own cacheMaxAge is one fixed value, whatever the answer says).
 */
function remoteKeySet(url: string | URL, fixedMaxAgeMs: number | undefined): JWTVerifyGetKey {
  const href = new URL(url).href;
  const id = `${fixedMaxAgeMs ?? 'answer'} ${href}`;
  const known = remoteKeySets.get(id);
  if (known) return known;
  const cache = {} as JWKSCacheInput; // jose records each successful fetch in it (uat)
  let maxAgeMs = fixedMaxAgeMs ?? JWKS_CACHE_MAX_AGE_MS;
  const set = createRemoteJWKSet(new URL(href), {
    cacheMaxAge: Infinity, // timed below instead
    [jwksCache]: cache,
    // Past a browser's HTTP cache, which hands back an answer it has held for up to its max-age,
    // with no Age header: this cache's lifetime would come on top of it.
    [customFetch]: async (input, init) => {
      const answer = await fetch(input, { ...init, cache: 'no-store' });
      if (fixedMaxAgeMs === undefined && answer.status === 200) maxAgeMs = freshFor(answer.headers) ?? JWKS_CACHE_MAX_AGE_MS;
      return answer;
    },
  });
  const keySet: JWTVerifyGetKey = async (header, token) => {
    if ('uat' in cache && Date.now() - cache.uat >= maxAgeMs) await set.reload();
    return set(header, token);
  };
  remoteKeySets.set(id, keySet);
  return keySet;
}

function importPublicKey(base64Pem: string): Promise<CryptoKey> {
  let key = importedKeys.get(base64Pem);
  if (!key) {
    key = importSPKI(atob(base64Pem), 'ES256');
    importedKeys.set(base64Pem, key);
  }
  return key;
}

/**
 * Misuse is a TypeError, as in jose: jose skips the `iss` or `aud` check it is given no value for, so
 * an `audience` read from an unset environment variable would take a token of any audience of the app.
 */
function checkOptions(options: VerifyAuthTokenOptions): void {
  for (const name of ['appId', 'audience'] as const) {
    if (typeof options?.[name] !== 'string' || options[name] === '') throw new TypeError(`verifyAuthToken: ${name} must be a non-empty string`);
  }
  if ((options.jwksUrl === undefined) === (options.publicKey === undefined)) throw new TypeError('verifyAuthToken: give jwksUrl or publicKey, one of them');
  const tolerance = options.clockTolerance;
  if (tolerance !== undefined && !(typeof tolerance === 'number' && Number.isFinite(tolerance) && tolerance >= 0)) {
    throw new TypeError('verifyAuthToken: clockTolerance must be a number of seconds, 0 or more');
  }
  const maxAge = options.jwksMaxAgeSeconds;
  if (maxAge !== undefined && !(options.jwksUrl !== undefined && typeof maxAge === 'number' && Number.isFinite(maxAge) && maxAge > 0)) {
    throw new TypeError('verifyAuthToken: jwksMaxAgeSeconds must be a number of seconds above 0, with jwksUrl');
  }
}

/**
 * Verifies a tokenmint auth token and resolves to its claims. Rejects (with a jose error carrying a
 * `code` such as `ERR_JWT_EXPIRED` or `ERR_JWS_SIGNATURE_VERIFICATION_FAILED`) unless the token is
 * an ES256 JWS with `typ` JWT, signed by a key of the app, with `iss` = appId, `aud` = audience,
 * past its nbf (less NBF_LEEWAY_SECONDS), before its exp, and not a refresh token.
 *
 * @example
 * const claims = await verifyAuthToken(token, {
 *   appId: 'acme', audience: 'web-app', jwksUrl: 'https://auth.example.com/app/acme/jwks.json',
 * });
 * claims.sub; // "user-42"
 */
export async function verifyAuthToken(token: string, options: VerifyAuthTokenOptions): Promise<AuthTokenClaims> {
  checkOptions(options);
  const tolerance = options.clockTolerance ?? 0;
  const checks: JWTVerifyOptions = {
    algorithms: ['ES256'],
    typ: 'JWT',
    issuer: options.appId,
    audience: options.audience,
    requiredClaims: ['sub', 'jid', 'iat', 'nbf', 'exp'],
    clockTolerance: tolerance + NBF_LEEWAY_SECONDS, // jose has one tolerance for nbf and exp: exp is checked again below
  };
  const { payload } = options.jwksUrl
    ? await jwtVerify(token, remoteKeySet(options.jwksUrl, options.jwksMaxAgeSeconds === undefined ? undefined : options.jwksMaxAgeSeconds * 1000), checks)
    : await jwtVerify(token, await importPublicKey(options.publicKey!), checks);
  if (payload.exp! <= Math.floor(Date.now() / 1000) - tolerance) {
    throw new errors.JWTExpired('"exp" claim timestamp check failed', payload, 'exp', 'check_failed');
  }
  if ((payload as JWTPayload & { type?: unknown }).type !== undefined) {
    throw new errors.JWTClaimValidationFailed('a refresh token is not an auth token', payload, 'type', 'check_failed');
  }
  return payload as unknown as AuthTokenClaims;
}
