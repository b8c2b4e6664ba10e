import { createHash, createHmac, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { signJwt } from '../../src/tokens/jwt.js';
import { client, decodePart, forge, harness, type Harness, type Pair } from '../helpers.js';

/** An app with one issued session; renew is allowed at once (nbf 0) unless said otherwise. */
async function setup(settings = {}) {
  const h = await harness();
  const app = await h.createApp('acme', { refreshNbfSeconds: 0, reuseGraceSeconds: 10, ...settings });
  const pair = (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, app.appKey)).json()) as Pair;
  return { h, ...app, pair };
}

/** Renews `token` and expects the contract's 401, with `reason` in the request log. */
async function expect401(h: Harness, appKey: string, token: string, reason: string | RegExp) {
  const res = await h.post('/app/acme/renew', { refresh_token: token, ...client }, appKey);
  expect(res.status).toBe(401);
  expect(await res.json()).toEqual({ message: 'invalid refresh token' });
  expect(h.logs.at(-1)).toMatchObject({ route: '/app/:app_id/renew', status: 401, reason: expect.stringMatching(reason) });
}

/** ES256 signature with an arbitrary key, in JWS (IEEE P1363) form. */
const es256 = (input: string, privateKey: Parameters<typeof cryptoSign>[2] & object) =>
  cryptoSign('sha256', Buffer.from(input), { key: privateKey as never, dsaEncoding: 'ieee-p1363' }).toString('base64url');

describe('renew refuses a bad refresh token with one 401 body; the reason goes to the log', () => {
  it('malformed', async () => {
    const { h, appKey } = await setup();
    await expect401(h, appKey, 'not-a-jwt', 'malformed');
    await expect401(h, appKey, 'a.b.c', 'malformed');
  });

  it('bad signature', async () => {
    const { h, appKey, pair } = await setup();
    const [head, body, sig] = pair.refresh_token.split('.');
    const flipped = Buffer.from(sig!, 'base64url');
    flipped[5]! ^= 0xff;
    await expect401(h, appKey, `${head}.${body}.${flipped.toString('base64url')}`, 'bad signature');
  });

  it('token of another app', async () => {
    const { h, appKey } = await setup();
    const other = await h.createApp('other', { refreshNbfSeconds: 0 });
    const foreign = (await (await h.post('/app/other/issue', { sub: 'u', ...client }, other.appKey)).json()) as Pair;
    await expect401(h, appKey, foreign.refresh_token, 'unknown kid');
  });

  it('wrong type: an auth token presented as a refresh token', async () => {
    const { h, appKey, pair } = await setup();
    await expect401(h, appKey, pair.auth_token, 'not a refresh token');
  });

  it('unknown kid', async () => {
    const { h, appKey, pair } = await setup();
    const [, body, sig] = pair.refresh_token.split('.');
    const header = Buffer.from(JSON.stringify({ alg: 'ES256', kid: '01ARZ3NDEKTSV4RRFFQ69G5FAV', typ: 'JWT' })).toString('base64url');
    await expect401(h, appKey, `${header}.${body}.${sig}`, 'unknown kid');
  });

  it('revoked kid', async () => {
    const { h, appKey, pair, kid } = await setup();
    await h.tm.keyring.revoke('acme', kid);
    await expect401(h, appKey, pair.refresh_token, 'revoked kid');
  });

  it('expired (idle timeout)', async () => {
    const { h, appKey, pair } = await setup({ refreshTtlSeconds: 600 });
    h.clock.advance(600);
    await expect401(h, appKey, pair.refresh_token, 'expired');
  });

  it('before its nbf', async () => {
    const { h, appKey, pair } = await setup({ refreshNbfSeconds: 60 });
    h.clock.advance(59);
    await expect401(h, appKey, pair.refresh_token, 'before nbf');
    h.clock.advance(1);
    expect((await h.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, appKey)).status).toBe(200);
  });

  it('already used, outside the grace window', async () => {
    const { h, appKey, pair } = await setup();
    expect((await h.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, appKey)).status).toBe(200);
    h.clock.advance(11);
    await expect401(h, appKey, pair.refresh_token, 'reuse');
  });

  it('revoked session', async () => {
    const { h, appKey, pair } = await setup();
    expect(await h.tm.sessions.revokeSessions('acme', { sub: 'u' })).toBe(1);
    await expect401(h, appKey, pair.refresh_token, 'session revoked');
  });

  it('unknown jid (validly signed, never stored)', async () => {
    const { h, appKey, pair } = await setup();
    const signer = await h.tm.keyring.signer('acme');
    const claims = { ...decodePart(pair.refresh_token, 1), jid: '01ARZ3NDEKTSV4RRFFQ69G5FAV' };
    await expect401(h, appKey, await signJwt(claims, signer), 'unknown jid');
  });
});

describe('RFC 8725 attacks', () => {
  it('alg "none" is refused', async () => {
    const { h, appKey, pair, kid } = await setup();
    const claims = decodePart(pair.refresh_token, 1);
    await expect401(h, appKey, forge({ alg: 'none', kid, typ: 'JWT' }, claims), 'alg none not allowed');
  });

  it('HS256 signed with the public key as the HMAC secret is refused', async () => {
    const { h, appKey, pair, kid } = await setup();
    const secret = Buffer.from(pair.public_key, 'base64').toString('utf8');
    const unsigned = forge({ alg: 'HS256', kid, typ: 'JWT' }, decodePart(pair.refresh_token, 1)).slice(0, -1);
    const mac = createHmac('sha256', secret).update(unsigned).digest('base64url');
    await expect401(h, appKey, `${unsigned}.${mac}`, 'alg HS256 not allowed');
  });

  it('a foreign ES256 key under the app\'s kid is refused', async () => {
    const { h, appKey, pair, kid } = await setup();
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const unsigned = forge({ alg: 'ES256', kid, typ: 'JWT' }, decodePart(pair.refresh_token, 1)).slice(0, -1);
    await expect401(h, appKey, `${unsigned}.${es256(unsigned, privateKey)}`, 'bad signature');
  });

  it('a tampered payload is refused', async () => {
    const { h, appKey, pair } = await setup({ refreshTtlSeconds: 600 });
    const [head, , sig] = pair.refresh_token.split('.');
    const payload = { ...decodePart(pair.refresh_token, 1), exp: 4_000_000_000 };
    h.clock.advance(700);
    await expect401(h, appKey, `${head}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${sig}`, 'bad signature');
  });

  it('a header without typ JWT is refused', async () => {
    const { h, appKey, pair } = await setup();
    const [, body, sig] = pair.refresh_token.split('.');
    const header = { ...decodePart(pair.refresh_token, 0), typ: 'at+jwt' };
    await expect401(h, appKey, `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${body}.${sig}`, 'typ is not JWT');
  });

  it('a token of this app\'s key but another iss is refused', async () => {
    const { h, appKey, pair } = await setup();
    const signer = await h.tm.keyring.signer('acme');
    await expect401(h, appKey, await signJwt({ ...decodePart(pair.refresh_token, 1), iss: 'other' }, signer), 'iss is another app');
  });

  it('a header without a kid is refused', async () => {
    const { h, appKey, pair } = await setup();
    const [, body, sig] = pair.refresh_token.split('.');
    for (const kid of [undefined, 7, null]) {
      const header = { ...decodePart(pair.refresh_token, 0), kid };
      await expect401(h, appKey, `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${body}.${sig}`, 'no kid');
    }
  });

  it('a crit header is refused, even signed with the app\'s own key (RFC 7515 §4.1.11: no extension is understood here)', async () => {
    const { h, appKey, pair } = await setup();
    const signer = await h.tm.keyring.signer('acme');
    const encodedHeader = Buffer.from(JSON.stringify({ ...decodePart(pair.refresh_token, 0), crit: ['b64'], b64: true })).toString('base64url');
    await expect401(h, appKey, signJwt(decodePart(pair.refresh_token, 1), { ...signer, encodedHeader }), 'crit header not supported');
  });

  it('claims of the wrong kind are refused, even signed with the app\'s own key', async () => {
    const { h, appKey, pair } = await setup();
    const signer = await h.tm.keyring.signer('acme');
    const claims = decodePart(pair.refresh_token, 1);
    for (const wrong of [{ jid: 7 }, { jid: undefined }, { iat: String(claims.iat) }, { nbf: Number(claims.nbf) + 0.5 }, { exp: undefined }, { exp: 1e300 }]) {
      await expect401(h, appKey, signJwt({ ...claims, ...wrong }, signer), 'malformed claims');
    }
  });
});

describe('authenticating a refresh token by its stored digest', () => {
  it('stores the SHA-256 of each refresh token, never the token', async () => {
    const { h, appKey, pair } = await setup();
    const renewed = (await (await h.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, appKey)).json()) as Pair;
    for (const token of [pair.refresh_token, renewed.refresh_token]) {
      const row = await h.tm.repo.findRefreshToken(decodePart(token, 1).jid as string);
      expect(Buffer.from(row!.token.tokenSha256!).toString('hex')).toBe(createHash('sha256').update(token).digest('hex'));
    }
    await h.tm.close();
    const onDisk = Buffer.concat(['tokenmint.db', 'tokenmint.db-wal'].map((f) => path.join(h.dir, f)).filter(fs.existsSync).map((f) => fs.readFileSync(f)));
    for (const token of [pair.refresh_token, renewed.refresh_token]) expect(onDisk.includes(token.split('.')[2]!)).toBe(false);
  });

  it('a token that is not the stored string still renews when its signature verifies (the digest is a shortcut)', async () => {
    const { h, appKey, pair } = await setup();
    const resigned = signJwt(decodePart(pair.refresh_token, 1), await h.tm.keyring.signer('acme'));
    expect(resigned).not.toBe(pair.refresh_token);
    const res = await h.post('/app/acme/renew', { refresh_token: resigned, ...client }, appKey);
    expect(res.status).toBe(200);
  });
});
