import { serve } from '@hono/node-server';
import { createHmac } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, exportSPKI, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { verifyAuthToken } from '../src/verify.js';
import { client, decodePart, forge, harness, manualClock, onCleanup, type Harness, type Pair } from './helpers.js';

/** The harness app on a real port, so the verifier fetches the JWKS over HTTP. */
async function listening(h: Harness): Promise<string> {
  const server = serve({ fetch: h.app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise((resolve) => server.once('listening', resolve));
  onCleanup(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function setup(clockStart = Date.now()) {
  const h = await harness({ clock: manualClock(clockStart) });
  const { appKey } = await h.createApp('acme');
  const other = await h.createApp('other');
  const url = await listening(h);
  const pair = (await (await h.post('/app/acme/issue', { sub: 'u', ...client, personal: { a: 1 } }, appKey)).json()) as Pair;
  const foreign = (await (await h.post('/app/other/issue', { sub: 'u', ...client }, other.appKey)).json()) as Pair;
  return { h, pair, foreign, jwksUrl: `${url}/app/acme/jwks.json` };
}

describe('tokenmint/verify in Node', () => {
  it('resolves to the claims, by public key and by JWKS URL', async () => {
    const { pair, jwksUrl } = await setup();
    for (const how of [{ publicKey: pair.public_key }, { jwksUrl }]) {
      const claims = await verifyAuthToken(pair.auth_token, { appId: 'acme', audience: 'web-app', ...how });
      expect(claims).toMatchObject({ iss: 'acme', aud: 'web-app', sub: 'u', personal: { a: 1 }, ip: client.ip });
    }
  });

  it('rejects tampered, foreign, wrong-audience, refresh, forged and expired tokens', async () => {
    const { pair, foreign, jwksUrl } = await setup();
    const [head, , sig] = pair.auth_token.split('.');
    const tampered = `${head}.${Buffer.from(JSON.stringify({ ...decodePart(pair.auth_token, 1), sub: 'admin' })).toString('base64url')}.${sig}`;
    const hs256 = (() => {
      const unsigned = forge({ alg: 'HS256', kid: pair.key_id, typ: 'JWT' }, decodePart(pair.auth_token, 1)).slice(0, -1);
      return `${unsigned}.${createHmac('sha256', Buffer.from(pair.public_key, 'base64').toString()).update(unsigned).digest('base64url')}`;
    })();
    const none = forge({ alg: 'none', kid: pair.key_id, typ: 'JWT' }, decodePart(pair.auth_token, 1));
    const cases: Array<[string, object, string]> = [
      [tampered, { publicKey: pair.public_key }, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
      [tampered, { jwksUrl }, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
      [foreign.auth_token, { jwksUrl }, 'ERR_JWKS_NO_MATCHING_KEY'],
      [foreign.auth_token, { publicKey: foreign.public_key }, 'ERR_JWT_CLAIM_VALIDATION_FAILED'], // iss
      [pair.refresh_token, { publicKey: pair.public_key }, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
      [hs256, { publicKey: pair.public_key }, 'ERR_JOSE_ALG_NOT_ALLOWED'],
      [none, { jwksUrl }, 'ERR_JOSE_ALG_NOT_ALLOWED'],
    ];
    for (const [token, how, code] of cases) {
      await expect(verifyAuthToken(token, { appId: 'acme', audience: 'web-app', ...how } as never)).rejects.toMatchObject({ code });
    }
    await expect(verifyAuthToken(pair.auth_token, { appId: 'acme', audience: 'mobile', publicKey: pair.public_key })).rejects.toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
    // As the README warns users of other libraries: a refresh token has the auth token's header and
    // keys, and only its missing aud stops plain jose; given no audience, jose takes it (past its nbf).
    const keys = createRemoteJWKSet(new URL(jwksUrl));
    const checks = { algorithms: ['ES256'], typ: 'JWT', issuer: 'acme', currentDate: new Date(Date.now() + 120_000) };
    await expect(jwtVerify(pair.refresh_token, keys, { ...checks, audience: 'web-app' })).rejects.toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' });
    expect((await jwtVerify(pair.refresh_token, keys, checks)).payload).toMatchObject({ type: 'refresh' });
  });

  it('rejects misuse with a TypeError before looking at the token: no appId or audience (jose would skip that check), neither or both of jwksUrl and publicKey, a bad clockTolerance or jwksMaxAgeSeconds', async () => {
    const { pair, jwksUrl } = await setup();
    const base = { appId: 'acme', audience: 'web-app', publicKey: pair.public_key };
    const misuses: Array<[object, string]> = [
      [{ ...base, audience: undefined }, 'verifyAuthToken: audience must be a non-empty string'], // an unset AUDIENCE variable
      [{ ...base, audience: '' }, 'verifyAuthToken: audience must be a non-empty string'],
      [{ ...base, appId: undefined }, 'verifyAuthToken: appId must be a non-empty string'],
      [{ appId: 'acme', audience: 'web-app' }, 'verifyAuthToken: give jwksUrl or publicKey, one of them'],
      [{ ...base, jwksUrl }, 'verifyAuthToken: give jwksUrl or publicKey, one of them'],
      [{ ...base, clockTolerance: '60' }, 'verifyAuthToken: clockTolerance must be a number of seconds, 0 or more'],
      [{ ...base, clockTolerance: -1 }, 'verifyAuthToken: clockTolerance must be a number of seconds, 0 or more'],
      [{ ...base, jwksMaxAgeSeconds: 60 }, 'verifyAuthToken: jwksMaxAgeSeconds must be a number of seconds above 0, with jwksUrl'],
      [{ appId: 'acme', audience: 'web-app', jwksUrl, jwksMaxAgeSeconds: 0 }, 'verifyAuthToken: jwksMaxAgeSeconds must be a number of seconds above 0, with jwksUrl'],
    ];
    for (const [options, message] of misuses) await expect(verifyAuthToken(pair.auth_token, options as never)).rejects.toThrow(new TypeError(message));
    // Until this version a token of another audience of the app was taken when audience was missing.
    const api = await verifyAuthToken(pair.auth_token, base);
    expect(api.aud).toBe('web-app');
  });

  it('caches the JWKS for jwksMaxAgeSeconds when given (a server with a shorter JWKS_MAX_AGE_SECONDS): a revoked key is refused that soon', async () => {
    const { h, pair, jwksUrl } = await setup();
    const short = { appId: 'acme', audience: 'web-app', jwksUrl, jwksMaxAgeSeconds: 1 };
    const usual = { appId: 'acme', audience: 'web-app', jwksUrl }; // 300 s
    await verifyAuthToken(pair.auth_token, short);
    await verifyAuthToken(pair.auth_token, usual);
    await h.tm.keyring.revoke('acme', pair.key_id);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // jose times its cache by the real clock
    await expect(verifyAuthToken(pair.auth_token, short)).rejects.toMatchObject({ code: 'ERR_JWKS_NO_MATCHING_KEY' });
    // What the option shortens: with the usual lifetime the cached JWKS still holds the revoked key.
    expect((await verifyAuthToken(pair.auth_token, usual)).sub).toBe('u');
  });

  it('refuses once its cached JWKS is stale and cannot be fetched again (the address blocked for wrong app keys: 429), rather than trust old keys', async () => {
    const { pair, jwksUrl } = await setup();
    const short = { appId: 'acme', audience: 'web-app', jwksUrl, jwksMaxAgeSeconds: 1 };
    const usual = { appId: 'acme', audience: 'web-app', jwksUrl }; // 300 s
    await verifyAuthToken(pair.auth_token, short);
    await verifyAuthToken(pair.auth_token, usual);
    // This process's address fails the app key APP_KEY_FAILURE_LIMIT (20) times over HTTP: every request of it to acme is now 429.
    const issue = () => fetch(jwksUrl.replace('/jwks.json', '/issue'), { method: 'POST', headers: { authorization: 'tmk_wrong' }, body: '{}' });
    for (let wrong = 1; wrong <= 20; wrong++) expect((await issue()).status).toBe(403);
    expect((await fetch(jwksUrl)).status).toBe(429);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // jose times its cache by the real clock
    await expect(verifyAuthToken(pair.auth_token, short)).rejects.toThrow(/Expected 200 OK from the JSON Web Key Set HTTP response/);
    expect((await verifyAuthToken(pair.auth_token, usual)).sub).toBe('u'); // its cache is still fresh
  });

  it('caches the JWKS for the max-age its answer gives (the server\'s JWKS_MAX_AGE_SECONDS): a revoked key is refused that soon', async () => {
    const h = await harness({ env: { JWKS_MAX_AGE_SECONDS: '1' }, clock: manualClock(Date.now()) });
    const { appKey } = await h.createApp('acme');
    const pair = (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey)).json()) as Pair;
    const options = { appId: 'acme', audience: 'web-app', jwksUrl: `${await listening(h)}/app/acme/jwks.json` };
    expect((await verifyAuthToken(pair.auth_token, options)).sub).toBe('u');
    await h.tm.keyring.revoke('acme', pair.key_id);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // jose times its cache by the real clock
    // Until this version it cached 300 s whatever the server said, unless given jwksMaxAgeSeconds.
    await expect(verifyAuthToken(pair.auth_token, options)).rejects.toMatchObject({ code: 'ERR_JWKS_NO_MATCHING_KEY' });
  });

  it('takes the max-age less Age, no-store as 1 s, and 300 s when the answer gives none', async () => {
    const { h, pair } = await setup();
    const jwks = await (await h.app.request('/app/acme/jwks.json')).text();
    /** The app's JWKS behind a server of our own that sends `headers` and counts the fetches. */
    const served = async (headers: Record<string, string>) => {
      let fetches = 0;
      const server = serve({ fetch: () => (fetches++, new Response(jwks, { headers: { 'content-type': 'application/json', ...headers } })), port: 0, hostname: '127.0.0.1' });
      await new Promise((resolve) => server.once('listening', resolve));
      onCleanup(() => new Promise((resolve) => server.close(resolve)));
      const options = { appId: 'acme', audience: 'web-app', jwksUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json` };
      return { verify: () => verifyAuthToken(pair.auth_token, options), fetches: () => fetches };
    };
    const cases = {
      aged: await served({ 'cache-control': 'public, max-age=3600', age: '3599' }),
      noStore: await served({ 'cache-control': 'no-store' }),
      none: await served({}),
      usual: await served({ 'cache-control': 'public, max-age=300' }),
    };
    for (const c of Object.values(cases)) for (let i = 0; i < 3; i++) expect((await c.verify()).sub).toBe('u');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    for (const c of Object.values(cases)) await c.verify();
    expect(Object.fromEntries(Object.entries(cases).map(([name, c]) => [name, c.fetches()]))).toEqual({ aged: 2, noStore: 2, none: 1, usual: 1 });
  });

  it('rejects an expired token, to the second; clockTolerance allows that much past exp', async () => {
    const { pair } = await setup(Date.now() - 3601_000);
    const options = { appId: 'acme', audience: 'web-app', publicKey: pair.public_key };
    await expect(verifyAuthToken(pair.auth_token, options)).rejects.toMatchObject({ code: 'ERR_JWT_EXPIRED' });
    await expect(verifyAuthToken(pair.auth_token, { ...options, clockTolerance: 5 })).resolves.toMatchObject({ sub: 'u' });
  });

  it('takes a fresh token from an issuer whose clock runs up to a minute ahead; further only with clockTolerance', async () => {
    // nbf is the second the token was signed, by tokenmint's clock: here 30 s and 2 minutes ahead of ours.
    const ahead = await setup(Date.now() + 30_000);
    const options = { appId: 'acme', audience: 'web-app', publicKey: ahead.pair.public_key };
    await expect(verifyAuthToken(ahead.pair.auth_token, options)).resolves.toMatchObject({ sub: 'u' });
    const farAhead = await setup(Date.now() + 120_000);
    const farOptions = { appId: 'acme', audience: 'web-app', publicKey: farAhead.pair.public_key };
    await expect(verifyAuthToken(farAhead.pair.auth_token, farOptions)).rejects.toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'nbf' });
    await expect(verifyAuthToken(farAhead.pair.auth_token, { ...farOptions, clockTolerance: 90 })).resolves.toMatchObject({ sub: 'u' });
  });

  it('refuses a token that says type refresh even with the audience, and one that lacks a claim an auth token has', async () => {
    // tokenmint signs no such token; a key of one's own stands in for the app's (the checks come after the signature's).
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const options = { appId: 'acme', audience: 'web-app', publicKey: btoa(await exportSPKI(publicKey)) };
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'acme', aud: 'web-app', sub: 'u', jid: '01ARZ3NDEKTSV4RRFFQ69G5FAV', iat: now, nbf: now, exp: now + 60, ip: client.ip, useragent: client.useragent };
    const signed = (payload: object) => new SignJWT({ ...payload }).setProtectedHeader({ alg: 'ES256', kid: 'k', typ: 'JWT' }).sign(privateKey);
    await expect(verifyAuthToken(await signed(claims), options)).resolves.toMatchObject({ sub: 'u' });
    await expect(verifyAuthToken(await signed({ ...claims, type: 'refresh' }), options)).rejects.toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'type' });
    for (const missing of ['sub', 'jid', 'iat', 'nbf', 'exp'] as const) {
      const { [missing]: _, ...without } = claims;
      await expect(verifyAuthToken(await signed(without), options), missing).rejects.toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: missing });
    }
  });
});
