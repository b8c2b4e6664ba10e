import { hash, sign, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
import { invalidRefreshToken } from '../errors.js';
import type { Signer } from '../keyring/keyring.js';
import type { AppRecord } from '../storage/repository.js';
import { toSeconds } from '../clock.js';

// The server signs and verifies its own tokens with node:crypto KeyObjects, at about twice the rate
// of WebCrypto (which jose uses in Node). jose still generates the keys, and consumers verify with
// jose (tokenmint/verify). The checks RFC 8725 asks for are spelled out below, one by one.

/** The only algorithm tokenmint signs with or accepts. */
export const ALG = 'ES256';
const ES256_SIGNATURE_BYTES = 64; // r ‖ s, 32 bytes each (JWS, RFC 7518 §3.4)
const BASE64URL = /^[A-Za-z0-9_-]*$/;

const encodeSegment = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** The protected header every token of `kid` carries, encoded once per key. */
export const encodedHeader = (kid: string) => encodeSegment({ alg: ALG, kid, typ: 'JWT' });

/** Compact JWS with the contract's header `{"alg":"ES256","kid":…,"typ":"JWT"}`. */
export function signJwt(claims: object, signer: Signer): string {
  const signingInput = `${signer.encodedHeader}.${encodeSegment(claims)}`;
  const signature = sign('sha256', Buffer.from(signingInput), { key: signer.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${signingInput}.${signature.toString('base64url')}`;
}

/** What identifies a token string: stored for every refresh token issued, compared on renew. */
export const tokenDigest = (token: string): Buffer => hash('sha256', token, 'buffer');

/** A compact JWS split and decoded, not yet trusted. */
export interface DecodedJws {
  token: string;
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signingInput: string;
  signature: Buffer;
}

const decodeObject = (segment: string): Record<string, unknown> | undefined => {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
};

/**
 * Splits a refresh token and checks its header: three base64url segments, JSON objects, `alg`
 * ES256 (checked, never trusted to choose the algorithm), `typ` JWT and a `kid`. Throws
 * `invalidRefreshToken(reason)`.
 */
export function decodeRefreshToken(token: string): DecodedJws & { kid: string } {
  const segments = token.split('.');
  if (segments.length !== 3 || !segments.every((s) => BASE64URL.test(s))) throw invalidRefreshToken('malformed');
  const [h, p, s] = segments as [string, string, string];
  const header = decodeObject(h);
  const payload = decodeObject(p);
  if (!header || !payload) throw invalidRefreshToken('malformed');
  if (header.alg !== ALG) throw invalidRefreshToken(`alg ${String(header.alg)} not allowed`);
  if (header.typ !== 'JWT') throw invalidRefreshToken('typ is not JWT');
  if (typeof header.kid !== 'string') throw invalidRefreshToken('no kid');
  if ('crit' in header) throw invalidRefreshToken('crit header not supported'); // RFC 7515 §4.1.11
  return { token, header, payload, signingInput: `${h}.${p}`, signature: Buffer.from(s, 'base64url'), kid: header.kid };
}

/**
 * Whether the token is authentic under `key`: either it is byte for byte the token the server stored
 * the digest of (constant-time comparison), or its ES256 signature verifies.
 */
export function isAuthentic(jws: DecodedJws, key: KeyObject, storedDigest: Uint8Array | null | undefined): boolean {
  if (storedDigest) {
    const presented = tokenDigest(jws.token);
    if (presented.length === storedDigest.length && timingSafeEqual(presented, storedDigest)) return true;
  }
  return (
    jws.signature.length === ES256_SIGNATURE_BYTES &&
    verify('sha256', Buffer.from(jws.signingInput), { key, dsaEncoding: 'ieee-p1363' }, jws.signature)
  );
}

const isSeconds = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

/**
 * Checks the claims of an authentic refresh token of `app`: `iss` this app, `type` "refresh", and
 * with `checkTimes` nbf ≤ now < exp. Throws `invalidRefreshToken(reason)`.
 */
export function checkRefreshClaims(payload: Record<string, unknown>, app: AppRecord, options: { now: number; checkTimes: boolean }): void {
  if (payload.iss !== app.appId) throw invalidRefreshToken('iss is another app');
  if (payload.type !== 'refresh') throw invalidRefreshToken('not a refresh token');
  const { jid, iat, nbf, exp } = payload;
  if (typeof jid !== 'string' || !isSeconds(iat) || !isSeconds(nbf) || !isSeconds(exp)) throw invalidRefreshToken('malformed claims');
  if (options.checkTimes) {
    const nowSeconds = toSeconds(options.now);
    if (nowSeconds < nbf) throw invalidRefreshToken('before nbf');
    if (nowSeconds >= exp) throw invalidRefreshToken('expired');
  }
}
