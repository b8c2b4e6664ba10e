import { compactVerify, decodeProtectedHeader, errors, SignJWT, type JWTPayload } from 'jose';
import type { Keyring, Signer } from '../keyring/keyring.js';
import { ALG } from '../keyring/keyring.js';
import { invalidRefreshToken } from '../errors.js';
import type { AppRecord } from '../storage/repository.js';
import type { RefreshTokenClaims } from './claims.js';

/** Compact JWS with the contract's header `{"alg":"ES256","kid":…,"typ":"JWT"}`. */
export function signJwt(claims: object, signer: Signer): Promise<string> {
  return new SignJWT(claims as JWTPayload).setProtectedHeader({ alg: ALG, kid: signer.kid, typ: 'JWT' }).sign(signer.privateKey);
}

const isSeconds = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

/**
 * Verifies a refresh token of `app`: ES256 only (the header's alg is checked, never trusted),
 * `typ` JWT, a `kid` of this app's published keys, a valid signature, `iss` this app and
 * `type` "refresh". With `checkTimes`, also nbf ≤ now < exp. Throws `invalidRefreshToken(reason)`.
 */
export async function verifyRefreshToken(
  token: string,
  app: AppRecord,
  keyring: Keyring,
  options: { now: number; checkTimes: boolean },
): Promise<RefreshTokenClaims> {
  let header;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw invalidRefreshToken('malformed');
  }
  if (header.alg !== ALG) throw invalidRefreshToken(`alg ${String(header.alg)} not allowed`);
  if (header.typ !== 'JWT') throw invalidRefreshToken('typ is not JWT');
  if (typeof header.kid !== 'string') throw invalidRefreshToken('no kid');
  const key = await keyring.verificationKey(app, header.kid);
  if ('refused' in key) throw invalidRefreshToken(key.refused);

  let payload: Record<string, unknown>;
  try {
    const verified = await compactVerify(token, key, { algorithms: [ALG] });
    payload = JSON.parse(new TextDecoder().decode(verified.payload)) as Record<string, unknown>;
  } catch (error) {
    throw invalidRefreshToken(error instanceof errors.JWSSignatureVerificationFailed ? 'bad signature' : 'malformed');
  }
  if (payload === null || typeof payload !== 'object') throw invalidRefreshToken('malformed');
  if (payload.iss !== app.appId) throw invalidRefreshToken('iss is another app');
  if (payload.type !== 'refresh') throw invalidRefreshToken('not a refresh token');
  const { jid, iat, nbf, exp } = payload;
  if (typeof jid !== 'string' || !isSeconds(iat) || !isSeconds(nbf) || !isSeconds(exp)) throw invalidRefreshToken('malformed claims');
  if (options.checkTimes) {
    const nowSeconds = Math.floor(options.now / 1000);
    if (nowSeconds < nbf) throw invalidRefreshToken('before nbf');
    if (nowSeconds >= exp) throw invalidRefreshToken('expired');
  }
  return { iss: app.appId, jid, iat, nbf, exp, type: 'refresh' };
}
