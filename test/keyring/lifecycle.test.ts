import { createPublicKey, verify as cryptoVerify, type JsonWebKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { runMaintenance } from '../../src/maintenance.js';
import { createApp } from '../../src/http/app.js';
import { createLogger } from '../../src/log.js';
import type { Repository } from '../../src/storage/repository.js';
import { createSessionService } from '../../src/tokens/session-service.js';
import { client, decodePart, harness, verifyIndependently, type Harness, type Pair } from '../helpers.js';

const issue = async (h: Harness, appKey: string) =>
  (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey)).json()) as Pair;
const jwksKids = async (h: Harness) =>
  ((await (await h.app.request('/app/acme/jwks.json')).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
const states = async (h: Harness, includePruned = false) =>
  Object.fromEntries((await h.tm.keyring.list('acme', { includePruned })).map((k) => [k.kid, k.state]));

describe('key lifecycle with a controlled clock', () => {
  it('next → current → retired → gone from the JWKS and pruned (its record kept)', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme', { rotateEverySeconds: 1000, accessTtlSeconds: 600, refreshTtlSeconds: 1200, refreshNbfSeconds: 0 });
    const [k1, k2] = [(await h.tm.keyring.signer('acme')).kid, Object.entries(await states(h)).find(([, s]) => s === 'next')![0]];

    h.clock.advance(999);
    expect((await runMaintenance(h.tm)).rotated).toEqual([]);
    const signedByK1 = await issue(h, appKey);
    h.clock.advance(1);
    expect((await runMaintenance(h.tm)).rotated).toEqual([{ appId: 'acme', kid: k2 }]);
    const afterFirst = await states(h);
    const k3 = Object.entries(afterFirst).find(([, s]) => s === 'next')![0];
    expect(afterFirst).toEqual({ [k1]: 'retired', [k2]: 'current', [k3]: 'next' });
    expect((await jwksKids(h)).sort()).toEqual([k1, k2, k3].sort());

    // A retired key still verifies what it signed.
    const renewed = await h.post('/app/acme/renew', { refresh_token: signedByK1.refresh_token, ...client }, appKey);
    expect(renewed.status).toBe(200);
    expect(((await renewed.json()) as Pair).key_id).toBe(k2);

    // Retired lifetime: max(access 600, refresh 1200) = 1200 s after retirement.
    h.clock.advance(1199);
    expect(await jwksKids(h)).toContain(k1);
    h.clock.advance(1);
    const { prunedKeys } = await runMaintenance(h.tm);
    expect(prunedKeys).toBe(1);
    expect(await jwksKids(h)).not.toContain(k1);
    expect(Object.keys(await states(h))).not.toContain(k1);
    const record = (await h.tm.keyring.list('acme', { includePruned: true })).find((k) => k.kid === k1)!;
    expect(record).toMatchObject({ state: 'retired', sealedPrivateKey: null, prunedAt: h.clock() });
  });

  it('shortening the token lifetimes keeps a retired key until what it signed before has expired; a pruned key never comes back', async () => {
    const h = await harness();
    const { appKey, kid: k1 } = await h.createApp('acme', { rotateEverySeconds: 0, accessTtlSeconds: 600, refreshTtlSeconds: 1200, refreshNbfSeconds: 0 });
    const signedByK1 = await issue(h, appKey); // refresh exp: now + 1200 s
    await h.tm.keyring.rotate('acme');
    h.clock.advance(10);
    await h.tm.apps.update('acme', { accessTtlSeconds: 60, refreshTtlSeconds: 120 });

    // By the new settings k1 would go 120 s after it retired; its refresh token lives 1200 s.
    h.clock.advance(1189);
    expect(await jwksKids(h)).toContain(k1);
    expect((await runMaintenance(h.tm)).prunedKeys).toBe(0);
    expect((await h.post('/app/acme/renew', { refresh_token: signedByK1.refresh_token, ...client }, appKey)).status).toBe(200);
    h.clock.advance(1);
    expect((await runMaintenance(h.tm)).prunedKeys).toBe(1);
    expect(await jwksKids(h)).not.toContain(k1);

    // Lengthening them again does not bring the destroyed key back into the JWKS.
    await h.tm.apps.update('acme', { accessTtlSeconds: 86400, refreshTtlSeconds: 86400 });
    expect(await jwksKids(h)).not.toContain(k1);
    expect(await h.tm.keyring.verificationKey(await h.tm.apps.get('acme'), k1)).toEqual({ refused: 'retired kid past its lifetime' });
  });

  it('a session started under a longer session-ttl keeps its refresh tokens verifying after the session-ttl is shortened', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme', { rotateEverySeconds: 0, accessTtlSeconds: 600, refreshTtlSeconds: 1200, refreshNbfSeconds: 0, sessionTtlSeconds: 86400 });
    const first = await issue(h, appKey);
    await h.tm.apps.update('acme', { sessionTtlSeconds: 300 }); // new sessions only; this one keeps its day
    h.clock.advance(700);
    const renewed = (await (await h.post('/app/acme/renew', { refresh_token: first.refresh_token, ...client }, appKey)).json()) as Pair;
    const claims = decodePart(renewed.refresh_token, 1) as { iat: number; exp: number };
    expect(claims.exp - claims.iat).toBe(1200);
    await h.tm.keyring.rotate('acme');

    h.clock.advance(1199);
    expect(await jwksKids(h)).toContain(renewed.key_id);
    expect((await h.post('/app/acme/renew', { refresh_token: renewed.refresh_token, ...client }, appKey)).status).toBe(200);
  });

  it('a scheduled rotation waits until the next key has been published one JWKS cache lifetime', async () => {
    const h = await harness({ env: { JWKS_MAX_AGE_SECONDS: '300' } });
    await h.createApp('acme', { rotateEverySeconds: 60 });
    h.clock.advance(60);
    expect((await runMaintenance(h.tm)).rotated).toHaveLength(0);
    h.clock.advance(239);
    expect((await runMaintenance(h.tm)).rotated).toHaveLength(0);
    h.clock.advance(1);
    expect((await runMaintenance(h.tm)).rotated).toHaveLength(1);
  });

  it('rotate-every 0 never rotates', async () => {
    const h = await harness();
    await h.createApp('acme', { rotateEverySeconds: 0 });
    h.clock.advance(10 * 365 * 86400);
    expect((await runMaintenance(h.tm)).rotated).toHaveLength(0);
  });

  it('revoking the current key: the next key signs at once, a new next is published, old tokens are refused', async () => {
    const h = await harness();
    const { appKey, kid } = await h.createApp('acme', { refreshNbfSeconds: 0 });
    const next = Object.entries(await states(h)).find(([, s]) => s === 'next')![0];
    const old = await issue(h, appKey);
    await h.tm.keyring.revoke('acme', kid);
    expect((await issue(h, appKey)).key_id).toBe(next);
    expect(await jwksKids(h)).not.toContain(kid);
    expect(Object.values(await states(h)).sort()).toEqual(['current', 'next', 'revoked']);
    expect((await h.post('/app/acme/renew', { refresh_token: old.refresh_token, ...client }, appKey)).status).toBe(401);
  });

  it('the current key revoked while an issue, a renew and a repeat within the grace are signed with it: each is signed again with the key that took over, and renews later', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme', { refreshNbfSeconds: 0 });
    // The real repository, with an admin's `key revoke` landing between a pair's signature and its commit.
    let revokeBeforeNextWrite = false;
    const revokeFirst = async (signedBy: string | undefined) => {
      if (!revokeBeforeNextWrite || signedBy === undefined) return;
      revokeBeforeNextWrite = false;
      await h.tm.keyring.revoke('acme', signedBy);
    };
    const racing: Repository = {
      ...h.tm.repo,
      createSession: async (session, first, options) => (await revokeFirst(options?.signedBy), h.tm.repo.createSession(session, first, options)),
      consumeRefreshToken: async (row, signedBy) => (await revokeFirst(signedBy), h.tm.repo.consumeRefreshToken(row, signedBy)),
      refuseRevokedKey: async (kid) => (await revokeFirst(kid), h.tm.repo.refuseRevokedKey(kid)),
    };
    const sessions = createSessionService({ repo: racing, keyring: h.tm.keyring, clock: h.clock, audit: h.tm.audit });
    const app = createApp({ ...h.tm, sessions, limiter: h.limiter, logger: createLogger('silent'), config: h.config });
    const post = async (route: string, body: object) => {
      const res = await app.request(`/app/acme/${route}`, { method: 'POST', headers: { authorization: appKey }, body: JSON.stringify(body) });
      return { status: res.status, pair: (await res.json()) as Pair };
    };

    const renewBody = async () => ({ refresh_token: (await post('issue', { sub: 'u', ...client })).pair.refresh_token, ...client });
    const repeatBody = async () => {
      const body = await renewBody();
      expect((await post('renew', body)).status).toBe(200); // its first use: the call below repeats it
      return body;
    };
    for (const [route, makeBody] of [['issue', async () => ({ sub: 'u', ...client })], ['renew', renewBody], ['renew', repeatBody]] as const) {
      const body = await makeBody();
      const signing = (await h.tm.keyring.signer('acme')).kid;
      revokeBeforeNextWrite = true;
      const { status, pair } = await post(route, body);
      // Until this version: 200 with a pair of the revoked key, whose first renew was refused (revoked kid).
      expect([status, revokeBeforeNextWrite, pair.key_id === signing]).toEqual([200, false, false]);
      expect(pair.key_id).toBe((await h.tm.keyring.signer('acme')).kid);
      expect(verifyIndependently(pair.auth_token, pair.public_key).payload.sub).toBe('u');
      expect((await h.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, appKey)).status).toBe(200);
    }
  });

  it('a verifier that caches the JWKS for its max-age never meets an unknown kid across scheduled rotations', async () => {
    const h = await harness({ env: { JWKS_MAX_AGE_SECONDS: '300' } });
    const { appKey } = await h.createApp('acme', { rotateEverySeconds: 600, accessTtlSeconds: 900 });
    let cache: { fetchedAt: number; keys: Map<string, JsonWebKey> } | undefined;
    let rotations = 0;
    for (let elapsed = 0; elapsed < 6 * 3600; elapsed += 37) {
      h.clock.advance(37);
      rotations += (await runMaintenance(h.tm)).rotated.length;
      if (!cache || h.clock() - cache.fetchedAt >= 300_000) {
        const res = await h.app.request('/app/acme/jwks.json');
        const { keys } = (await res.json()) as { keys: Array<JsonWebKey & { kid: string }> };
        cache = { fetchedAt: h.clock(), keys: new Map(keys.map((k) => [k.kid, k])) };
      }
      const token = (await issue(h, appKey)).auth_token;
      const jwk = cache.keys.get(String(decodePart(token, 0).kid));
      expect(jwk, `unknown kid at +${elapsed} s`).toBeDefined();
      const [head, body, sig] = token.split('.');
      const key = createPublicKey({ key: jwk!, format: 'jwk' });
      expect(cryptoVerify('sha256', Buffer.from(`${head}.${body}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig!, 'base64url'))).toBe(true);
    }
    expect(rotations).toBeGreaterThanOrEqual(30);
  });

  it('after a restart that lowers JWKS_MAX_AGE_SECONDS, a verifier holding a JWKS cached under the former max-age still never meets an unknown kid', async () => {
    const before = await harness({ env: { JWKS_MAX_AGE_SECONDS: '3600' } });
    await before.tm.keyring.recordServerStart();
    const { appKey } = await before.createApp('acme', { rotateEverySeconds: 600, accessTtlSeconds: 900 });
    const sameFile = { DATABASE_URL: String(before.env.DATABASE_URL), TOKENMINT_MASTER_KEY: String(before.env.TOKENMINT_MASTER_KEY) };
    // Each verifier caches the JWKS for the max-age its answer gave; the first fetched just before the restart.
    const fetchJwks = async (h: Harness) => {
      const res = await h.app.request('/app/acme/jwks.json');
      const { keys } = (await res.json()) as { keys: Array<{ kid: string }> };
      const maxAge = Number(/max-age=(\d+)/.exec(res.headers.get('cache-control') ?? '')?.[1]);
      return { until: h.clock() + maxAge * 1000, kids: new Set(keys.map((k) => k.kid)) };
    };
    before.clock.advance(3000);
    const caches = [await fetchJwks(before)];
    const after = await harness({ env: { ...sameFile, JWKS_MAX_AGE_SECONDS: '300' }, clock: before.clock });
    expect((await after.tm.keyring.recordServerStart()).former).toEqual({ maxAgeSeconds: 3600, loweredAt: after.clock() });
    let rotations = 0;
    for (let elapsed = 0; elapsed < 3 * 3600; elapsed += 37) {
      after.clock.advance(37);
      rotations += (await runMaintenance(after.tm)).rotated.length;
      if (elapsed % 370 === 0) caches.push(await fetchJwks(after)); // a verifier that fetches now and then
      const kid = String(decodePart((await issue(after, appKey)).auth_token, 0).kid);
      for (const cache of caches.filter((c) => c.until > after.clock())) expect(cache.kids.has(kid), `unknown kid at +${elapsed} s`).toBe(true);
    }
    // The first rotation promotes a key the early JWKS holds; the next wait for that JWKS to run out.
    expect(rotations).toBeGreaterThanOrEqual(10);
  });
});
