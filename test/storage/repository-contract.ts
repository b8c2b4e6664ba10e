import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AppRecord, JwksCaching, RefreshTokenRecord, Repository, SessionRecord, SigningKeyRecord } from '../../src/storage/repository.js';
import { DEFAULT_APP_SETTINGS } from '../../src/apps/app-settings.js';
import { isSigningKeyRevoked } from '../../src/errors.js';

export const NOW = Date.parse('2026-06-01T12:00:00Z');

export const appRecord = (appId: string): AppRecord => ({
  appId,
  ...DEFAULT_APP_SETTINGS,
  appKeyHash: 'h'.repeat(64),
  previousAppKeyHash: null,
  previousAppKeyExpiresAt: null,
  disabled: false,
  createdAt: NOW,
  updatedAt: NOW,
});

let seq = 0;
export const key = (appId: string, state: SigningKeyRecord['state']): SigningKeyRecord => ({
  kid: `K${String(++seq).padStart(25, '0')}`,
  appId,
  state,
  sealedPrivateKey: 'tm1.test',
  publicKeyPem: 'pem',
  createdAt: NOW,
  activatedAt: state === 'current' ? NOW : null,
  retiredAt: null,
  revokedAt: null,
  verifiesAtLeastUntil: null,
  prunedAt: null,
});

export const session = (appId: string, sub = 'u', id = `S${String(++seq).padStart(6, '0')}`): SessionRecord => ({
  sessionId: id,
  appId,
  sub,
  personal: null,
  createdAt: NOW,
  expiresAt: NOW + 3_600_000,
  revokedAt: null,
  revokeReason: null,
});

export const token = (s: SessionRecord, parentJid: string | null = null): RefreshTokenRecord => ({
  jid: `J${++seq}`,
  sessionId: s.sessionId,
  parentJid,
  iat: NOW / 1000,
  nbf: NOW / 1000,
  exp: NOW / 1000 + 3600,
  tokenSha256: createHash('sha256').update(`J${seq}`).digest(),
  ip: '203.0.113.7',
  useragent: 'ua',
  issuedAt: NOW,
});

/** Stores a session whose refresh tokens, renewed one into the next, expire `exps` seconds after NOW. */
const chainOf = (repo: Repository) => async (s: SessionRecord, exps: number[]) => {
  const tokens = exps.map((exp) => ({ ...token(s), exp: NOW / 1000 + exp }));
  await repo.createSession(s, tokens[0]!);
  for (const [i, t] of tokens.entries()) if (i > 0) expect(await repo.consumeRefreshToken({ ...t, parentJid: tokens[i - 1]!.jid })).toBe(true);
  return tokens;
};

/** The token `parent` is renewed into, issued `ms` after NOW. */
export const child = (s: SessionRecord, parent: RefreshTokenRecord, ms = 0) => ({ ...token(s), parentJid: parent.jid, issuedAt: NOW + ms });

/**
 * The guarantees every Repository implementation must keep. Run it against each one
 * (`repositoryContract('sqlite', () => …)`).
 */
export function repositoryContract(name: string, open: () => Promise<Repository>) {
  describe(`Repository contract: ${name}`, () => {
    async function withApp() {
      const repo = await open();
      const current = key('acme', 'current');
      const next = key('acme', 'next');
      await repo.createApp(appRecord('acme'), [current, next]);
      return { repo, current, next };
    }

    it('deleteApp deletes a disabled app with no session left, and its keys, and nothing else; else says why not', async () => {
      const { repo } = await withApp();
      await repo.createApp(appRecord('other'), [key('other', 'current'), key('other', 'next')]);
      expect(await repo.deleteApp('nobody')).toBe('unknown');
      expect(await repo.deleteApp('acme')).toBe('enabled');
      await repo.updateApp('acme', { disabled: true }, NOW);
      const s = session('acme', 'u');
      await repo.createSession(s, token(s));
      await repo.revokeSession(s.sessionId, 'admin', NOW);
      expect(await repo.deleteApp('acme')).toEqual({ sessions: 1 }); // revoked, but stored until pruned
      expect(await repo.findApp('acme')).toBeDefined();
      await repo.pruneExpired(NOW + 7_200_000);
      expect(await repo.deleteApp('acme')).toBe('deleted');
      expect(await repo.findApp('acme')).toBeUndefined();
      expect(await repo.listKeys('acme')).toEqual([]);
      expect(await repo.listKeys('other')).toHaveLength(2);
      expect(await repo.deleteApp('acme')).toBe('unknown');
    });

    it('refuses a second app with the same id', async () => {
      const { repo } = await withApp();
      await expect(repo.createApp(appRecord('acme'), [])).rejects.toMatchObject({ code: 'ERR_CONFLICT' });
    });

    it('consumeRefreshToken: exactly one of many concurrent callers wins, and only its child is stored', async () => {
      const { repo } = await withApp();
      const s = session('acme');
      const parent = token(s);
      await repo.createSession(s, parent);
      expect((await repo.findRefreshToken(parent.jid))?.child).toBeNull();
      const children = Array.from({ length: 20 }, (_, i) => child(s, parent, i));
      const results = await Promise.all(children.map((c) => repo.consumeRefreshToken(c)));
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = children[results.indexOf(true)]!;
      // The parent is now used: it reads with its child, stored exactly as given.
      const found = await repo.findRefreshToken(parent.jid);
      expect({ ...found?.child, tokenSha256: Buffer.from(found!.child!.tokenSha256!) }).toEqual(winner);
      expect((await repo.findRefreshToken(winner.jid))?.token).toMatchObject({ ...winner, tokenSha256: expect.anything() });
      for (const loser of children.filter((c) => c !== winner)) expect(await repo.findRefreshToken(loser.jid)).toBeUndefined();
      expect(await repo.consumeRefreshToken(child(s, parent))).toBe(false);
    });

    it('consumeRefreshToken refuses a token whose session is revoked, whatever other sessions there are', async () => {
      const { repo } = await withApp();
      const other = session('acme');
      await repo.createSession(other, token(other));
      const s = session('acme');
      const parent = token(s);
      await repo.createSession(s, parent);
      await repo.revokeSession(s.sessionId, 'reuse', NOW);
      expect(await repo.consumeRefreshToken(child(s, parent))).toBe(false);
      expect((await repo.findRefreshToken(parent.jid))?.child).toBeNull();
      expect((await repo.findRefreshToken(parent.jid))?.session).toMatchObject({ revokedAt: NOW, revokeReason: 'reuse' });
    });

    it('createSession and consumeRefreshToken refuse a pair signed by a key revoked meanwhile (signedBy), storing nothing, as refuseRevokedKey does; a retired key is fine', async () => {
      const { repo, current, next } = await withApp();
      const s = session('acme');
      const first = token(s);
      await repo.createSession(s, first, { signedBy: current.kid });
      await repo.rotateKeys('acme', key('acme', 'next'), NOW); // current retires: what it signed still stores
      expect(await repo.consumeRefreshToken(child(s, first), current.kid)).toBe(true);
      await repo.revokeKey('acme', next.kid, key('acme', 'next'), NOW);
      const parent = (await repo.findRefreshToken(first.jid))!.child!;
      await expect(repo.consumeRefreshToken(child(s, parent), next.kid)).rejects.toSatisfy(isSigningKeyRevoked);
      expect((await repo.findRefreshToken(parent.jid))?.child).toBeNull();
      const refused = session('acme');
      await expect(repo.createSession(refused, token(refused), { signedBy: next.kid })).rejects.toSatisfy(isSigningKeyRevoked);
      expect(await repo.listSessions('acme', refused.sub)).toHaveLength(1); // s alone
      await expect(repo.refuseRevokedKey(next.kid)).rejects.toSatisfy(isSigningKeyRevoked);
      await expect(repo.refuseRevokedKey(current.kid)).resolves.toBeUndefined(); // retired
    });

    it('catalogVersion moves with every change of an app or a key, and not with sessions', async () => {
      const { repo, current } = await withApp();
      const versions = [await repo.catalogVersion()];
      const s = session('acme');
      const first = token(s);
      await repo.createSession(s, first);
      await repo.consumeRefreshToken(child(s, first));
      expect(await repo.catalogVersion()).toBe(versions[0]);
      await repo.updateApp('acme', { disabled: true }, NOW);
      versions.push(await repo.catalogVersion());
      await repo.rotateKeys('acme', key('acme', 'next'), NOW);
      versions.push(await repo.catalogVersion());
      await repo.revokeKey('acme', current.kid, key('acme', 'next'), NOW);
      versions.push(await repo.catalogVersion());
      await repo.pruneKeys('acme', [current.kid], NOW);
      versions.push(await repo.catalogVersion());
      await repo.createApp(appRecord('other'), []);
      versions.push(await repo.catalogVersion());
      expect(new Set(versions).size).toBe(versions.length);
    });

    it('updateApp with tokenLifetimeMs holds every key that may have signed under the old settings, from the old settings, at once', async () => {
      const { repo, current: k1 } = await withApp();
      const k2 = (await repo.rotateKeys('acme', key('acme', 'next'), NOW + 1000))!; // k1 retired at NOW + 1000
      const k3 = key('acme', 'next');
      await repo.rotateKeys('acme', k3, NOW + 2000); // k2 retired at NOW + 2000, k3 current
      await repo.revokeKey('acme', k2.kid, key('acme', 'next'), NOW + 3000);
      const lifetimes: number[] = [];
      const before = await repo.findApp('acme');
      const updated = await repo.updateApp('acme', { refreshTtlSeconds: 60 }, NOW + 5000, (settings) => {
        lifetimes.push(settings.refreshTtlSeconds);
        return 7000;
      });
      expect(lifetimes).toEqual([before!.refreshTtlSeconds]); // the settings before the patch, read once
      expect(updated).toMatchObject({ refreshTtlSeconds: 60, updatedAt: NOW + 5000 });
      const held = Object.fromEntries((await repo.listKeys('acme')).map((k) => [k.kid, k.verifiesAtLeastUntil]));
      expect(held[k1.kid]).toBe(NOW + 1000 + 7000); // retired: from when it stopped signing
      expect(held[k2.kid]).toBeNull(); // revoked
      const unretired = (await repo.listKeys('acme')).filter((k) => k.state === 'current' || k.state === 'next');
      expect(unretired.map((k) => k.verifiesAtLeastUntil)).toEqual([NOW + 5000 + 7000, NOW + 5000 + 7000]); // may sign until now

      // Only ever raised; without tokenLifetimeMs, untouched; a pruned key is left alone.
      await repo.updateApp('acme', {}, NOW + 6000, () => 1);
      await repo.pruneKeys('acme', [k1.kid], NOW + 6000);
      await repo.updateApp('acme', {}, NOW + 7000, () => 100_000);
      await repo.updateApp('acme', { refreshTtlSeconds: 30 }, NOW + 8000);
      const after = Object.fromEntries((await repo.listKeys('acme')).map((k) => [k.kid, k.verifiesAtLeastUntil]));
      expect(after[k1.kid]).toBe(NOW + 1000 + 7000);
      expect(after[k3.kid]).toBe(NOW + 7000 + 100_000);
      expect(await repo.updateApp('nope', {}, NOW, () => 1)).toBeUndefined();
    });

    it('updateApp with a function makes the patch from the app inside the transaction; a throw there writes nothing', async () => {
      const { repo } = await withApp();
      const before = (await repo.findApp('acme'))!;
      const keysBefore = await repo.listKeys('acme');
      const updated = await repo.updateApp('acme', (app) => ({ accessTtlSeconds: app.accessTtlSeconds + 1 }), NOW + 1000);
      expect(updated).toMatchObject({ accessTtlSeconds: before.accessTtlSeconds + 1, updatedAt: NOW + 1000 });
      const refuse = () => {
        throw new Error('refused');
      };
      const refused = repo.updateApp('acme', refuse, NOW + 2000, () => 100_000);
      await expect(refused).rejects.toThrow('refused');
      expect(await repo.findApp('acme')).toEqual(updated);
      expect(await repo.listKeys('acme')).toEqual(keysBefore); // the key lifetimes of tokenLifetimeMs untouched too
      expect(await repo.updateApp('nope', () => ({ disabled: true }), NOW)).toBeUndefined();
    });

    it('keeps the digest of a refresh token', async () => {
      const { repo } = await withApp();
      const s = session('acme');
      const first = token(s);
      await repo.createSession(s, first);
      expect(Buffer.from((await repo.findRefreshToken(first.jid))!.token.tokenSha256!)).toEqual(Buffer.from(first.tokenSha256!));
    });

    it('rotateKeys: current → retired, next → current, a new next; one current and one next at all times', async () => {
      const { repo, current, next } = await withApp();
      const newNext = key('acme', 'next');
      expect(await repo.rotateKeys('acme', newNext, NOW + 1)).toMatchObject({ kid: next.kid, state: 'current', activatedAt: NOW + 1 });
      const states = Object.fromEntries((await repo.listKeys('acme')).map((k) => [k.kid, k.state]));
      expect(states).toEqual({ [current.kid]: 'retired', [next.kid]: 'current', [newNext.kid]: 'next' });
      expect(await repo.rotateKeys('nope', key('nope', 'next'), NOW)).toBeUndefined();
    });

    it('rotateKeys with due conditions: of two callers finding the same rotation due, one rotates', async () => {
      const { repo, next } = await withApp();
      const due = { currentActivatedAtOrBefore: NOW + 1000, nextCreatedAtOrBefore: NOW + 1000 };
      const results = await Promise.all([
        repo.rotateKeys('acme', key('acme', 'next'), NOW + 2000, due),
        repo.rotateKeys('acme', key('acme', 'next'), NOW + 2000, due),
      ]);
      expect(results.filter(Boolean)).toEqual([expect.objectContaining({ kid: next.kid })]);
      expect((await repo.listKeys('acme')).map((k) => k.state).sort()).toEqual(['current', 'next', 'retired']);
      // Not due: the current key is too young.
      expect(await repo.rotateKeys('acme', key('acme', 'next'), NOW + 2000, due)).toBeUndefined();
    });

    it('pruneKeys destroys private keys of retired and revoked keys only, keeping their rows', async () => {
      const { repo, current, next } = await withApp();
      await repo.rotateKeys('acme', key('acme', 'next'), NOW);
      expect(await repo.pruneKeys('acme', [current.kid, next.kid], NOW + 5)).toEqual([current.kid]); // next is now current: kept
      const keys = await repo.listKeys('acme');
      expect(keys.find((k) => k.kid === current.kid)).toMatchObject({ state: 'retired', sealedPrivateKey: null, prunedAt: NOW + 5 });
      expect(keys.find((k) => k.kid === next.kid)?.sealedPrivateKey).not.toBeNull();
      expect(await repo.pruneKeys('acme', [current.kid], NOW + 6)).toEqual([]);
    });

    it('resealKeys replaces a sealed key only where it is still the one given, and only in that app', async () => {
      const { repo, current, next } = await withApp();
      const other = key('beta', 'current');
      await repo.createApp(appRecord('beta'), [other]);
      const changes = [
        { kid: current.kid, from: current.sealedPrivateKey!, to: 'tm1.new.current' },
        { kid: next.kid, from: 'tm1.stale', to: 'tm1.new.next' }, // re-sealed or pruned meanwhile: left alone
        { kid: other.kid, from: other.sealedPrivateKey!, to: 'tm1.new.other' }, // another app's key
      ];
      const version = await repo.catalogVersion();
      expect(await repo.resealKeys('acme', changes)).toBe(1);
      expect(Object.fromEntries((await repo.listKeys('acme')).map((k) => [k.kid, k.sealedPrivateKey]))).toEqual({ [current.kid]: 'tm1.new.current', [next.kid]: next.sealedPrivateKey });
      expect((await repo.listKeys('beta'))[0]!.sealedPrivateKey).toBe(other.sealedPrivateKey);
      expect(await repo.catalogVersion()).not.toBe(version);
      expect(await repo.resealKeys('acme', changes)).toBe(0);
    });

    it('revokeKey on the current key promotes next and publishes a replacement next', async () => {
      const { repo, current, next } = await withApp();
      const replacement = key('acme', 'next');
      expect(await repo.revokeKey('acme', current.kid, replacement, NOW)).toMatchObject({ kid: current.kid, state: 'revoked' });
      const states = Object.fromEntries((await repo.listKeys('acme')).map((k) => [k.kid, k.state]));
      expect(states).toEqual({ [current.kid]: 'revoked', [next.kid]: 'current', [replacement.kid]: 'next' });
      expect(await repo.revokeKey('acme', 'unknown', key('acme', 'next'), NOW)).toBeUndefined();
    });

    it('revokeSessions counts live sessions of a subject (all, or all but one), or all of the app', async () => {
      const { repo } = await withApp();
      const kept = session('acme', 'a');
      await repo.createSession(kept, token(kept));
      for (const sub of ['a', 'a', 'b']) {
        const s = session('acme', sub);
        await repo.createSession(s, token(s));
      }
      const expired = { ...session('acme', 'a'), expiresAt: NOW - 1 };
      await repo.createSession(expired, token(expired));
      expect(await repo.revokeSessions('acme', { sub: 'a', exceptSessionId: kept.sessionId }, 'client', NOW)).toBe(2);
      expect((await repo.listSessions('acme', 'a')).filter((s) => s.revokedAt === null).map((s) => s.sessionId)).toEqual([expired.sessionId, kept.sessionId]);
      expect(await repo.revokeSessions('acme', { sub: 'a' }, 'admin', NOW)).toBe(1);
      expect(await repo.revokeSessions('acme', { sub: 'a' }, 'admin', NOW)).toBe(0);
      for (const sub of ['a', 'a']) {
        const s = session('acme', sub);
        await repo.createSession(s, token(s));
      }
      expect(await repo.revokeSessions('acme', { sub: 'a' }, 'admin', NOW)).toBe(2);
      expect(await repo.revokeSessions('acme', { sub: 'a' }, 'admin', NOW)).toBe(0);
      expect(await repo.revokeSessions('acme', {}, 'admin-all', NOW)).toBe(1);
    });

    it('listSessions: a subject\'s sessions of one app, newest first, with the client of the first token; revokeSessions ends one by id', async () => {
      const { repo } = await withApp();
      await repo.createApp(appRecord('other'), [key('other', 'current'), key('other', 'next')]);
      const first = session('acme', 'a');
      await repo.createSession(first, { ...token(first), ip: '198.51.100.1', useragent: 'laptop' });
      const second = { ...session('acme', 'a'), createdAt: NOW + 1000 };
      const secondToken = { ...token(second), ip: '2001:db8::7', useragent: 'phone' };
      await repo.createSession(second, secondToken);
      // A renew from elsewhere does not change what the session shows.
      expect(await repo.consumeRefreshToken({ ...child(second, secondToken), ip: '192.0.2.1', useragent: 'later' })).toBe(true);
      for (const [appId, sub] of [['acme', 'b'], ['other', 'a']] as const) {
        const s = session(appId, sub);
        await repo.createSession(s, token(s));
      }
      expect(await repo.listSessions('acme', 'a')).toEqual([
        { ...second, ip: '2001:db8::7', useragent: 'phone' },
        { ...first, ip: '198.51.100.1', useragent: 'laptop' },
      ]);
      expect(await repo.listSessions('acme', 'nobody')).toEqual([]);

      expect(await repo.revokeSessions('other', { sessionId: first.sessionId }, 'admin', NOW)).toBe(0);
      expect(await repo.revokeSessions('acme', { sessionId: first.sessionId }, 'admin', NOW)).toBe(1);
      expect(await repo.revokeSessions('acme', { sessionId: first.sessionId }, 'admin', NOW)).toBe(0);
      expect((await repo.listSessions('acme', 'a')).map((s) => [s.sessionId, s.revokeReason])).toEqual([[second.sessionId, null], [first.sessionId, 'admin']]);
    });

    it('listLiveSessions: the newest live sessions of one subject of one app, up to the limit, then the one to include if it is live, theirs and not among them', async () => {
      const { repo } = await withApp();
      await repo.createApp(appRecord('other'), [key('other', 'current'), key('other', 'next')]);
      let minute = 0;
      const start = async (appId: string, sub: string, changes: Partial<SessionRecord> = {}) => {
        const s = { ...session(appId, sub), createdAt: NOW + ++minute * 60_000, ...changes };
        await repo.createSession(s, token(s));
        return s.sessionId;
      };
      const [oldest, older, newer, newest] = [await start('acme', 'a'), await start('acme', 'a'), await start('acme', 'a'), await start('acme', 'a')];
      const [revoked, expired, otherSub, otherApp] = [await start('acme', 'a'), await start('acme', 'a', { expiresAt: NOW }), await start('acme', 'b'), await start('other', 'a')];
      await repo.revokeSession(revoked, 'client', NOW);
      const listed = async (limit: number, include?: string) => (await repo.listLiveSessions('acme', 'a', NOW, { limit, include })).map((s) => s.sessionId);
      expect(await listed(100)).toEqual([newest, newer, older, oldest]);
      expect(await listed(2)).toEqual([newest, newer]);
      expect(await listed(2, oldest)).toEqual([newest, newer, oldest]);
      expect(await listed(2, newer)).toEqual([newest, newer]);
      for (const notListed of [revoked, expired, otherSub, otherApp, 'no-such-session']) expect(await listed(2, notListed)).toEqual([newest, newer]);
      expect((await repo.listLiveSessions('acme', 'a', NOW, { limit: 1 }))[0]).toMatchObject({ sessionId: newest, ip: '203.0.113.7', useragent: 'ua' });
    });

    it('createSession with an issue key revokes (retried) the live sessions of that app and subject started with the same key and never renewed, and no other', async () => {
      const { repo } = await withApp();
      await repo.createApp(appRecord('other'), [key('other', 'current'), key('other', 'next')]);
      const start = async (appId: string, sub: string, issueKey?: string) => {
        const s = session(appId, sub);
        await repo.createSession(s, token(s), { issueKey });
        return s.sessionId;
      };
      const reasons = async (appId: string, sub: string) => Object.fromEntries((await repo.listSessions(appId, sub)).map((s) => [s.sessionId, s.revokeReason]));
      const [first, noKey, otherKey, otherSub, otherApp] = [await start('acme', 'a', 'K'), await start('acme', 'a'), await start('acme', 'a', 'L'), await start('acme', 'b', 'K'), await start('other', 'a', 'K')];
      const retry = await start('acme', 'a', 'K');
      expect(await reasons('acme', 'a')).toEqual({ [first]: 'retried', [noKey]: null, [otherKey]: null, [retry]: null });
      expect(await reasons('acme', 'b')).toEqual({ [otherSub]: null });
      expect(await reasons('other', 'a')).toEqual({ [otherApp]: null });
      // A third attempt replaces the second; a session already ended stays as it ended.
      const third = await start('acme', 'a', 'K');
      expect(await reasons('acme', 'a')).toMatchObject({ [first]: 'retried', [retry]: 'retried', [third]: null });
      // Not a session renewed since (its first token, whose jid is the session's id, has a child): its answer arrived.
      const held = session('acme', 'a');
      const heldFirst = { ...token(held), jid: held.sessionId };
      await repo.createSession(held, heldFirst, { issueKey: 'M' });
      expect(await repo.consumeRefreshToken(child(held, heldFirst))).toBe(true);
      const again = await start('acme', 'a', 'M');
      expect(await reasons('acme', 'a')).toMatchObject({ [held.sessionId]: null, [again]: null });
    });

    it('createSession with maxLiveSessions revokes (session-limit) the oldest live sessions of that app and subject beyond it, the new one counted; ended ones do not count', async () => {
      const { repo } = await withApp();
      await repo.createApp(appRecord('other'), [key('other', 'current'), key('other', 'next')]);
      let minute = 0;
      const start = async (appId: string, sub: string, options?: { issueKey?: string; maxLiveSessions?: number }) => {
        const s = { ...session(appId, sub), createdAt: NOW + ++minute * 60_000 };
        await repo.createSession(s, token(s), options);
        return s.sessionId;
      };
      const reasons = async (appId: string, sub: string) => Object.fromEntries((await repo.listSessions(appId, sub)).map((s) => [s.sessionId, s.revokeReason]));
      const expired = { ...session('acme', 'a'), expiresAt: NOW - 1 };
      await repo.createSession(expired, token(expired));
      const revoked = await start('acme', 'a');
      await repo.revokeSession(revoked, 'client', NOW);
      const [s1, s2, s3, otherSub, otherApp] = [await start('acme', 'a'), await start('acme', 'a'), await start('acme', 'a'), await start('acme', 'b'), await start('other', 'a')];
      const s4 = await start('acme', 'a', { maxLiveSessions: 2 });
      expect(await reasons('acme', 'a')).toEqual({ [expired.sessionId]: null, [revoked]: 'client', [s1]: 'session-limit', [s2]: 'session-limit', [s3]: null, [s4]: null });
      expect(await reasons('acme', 'b')).toEqual({ [otherSub]: null });
      expect(await reasons('other', 'a')).toEqual({ [otherApp]: null });
      // With an issue key too: the replaced attempt is revoked as retried, and the limit keeps the new session.
      const keyed = await start('acme', 'a', { issueKey: 'K' });
      const retry = await start('acme', 'a', { issueKey: 'K', maxLiveSessions: 1 });
      expect(await reasons('acme', 'a')).toMatchObject({ [s3]: 'session-limit', [s4]: 'session-limit', [keyed]: 'retried', [retry]: null });
      // Started in the same millisecond as the live one, and sorting before it by id: the new one stays all the same.
      const [before, after] = [{ ...session('acme', 'c', 'S-b'), createdAt: NOW }, { ...session('acme', 'c', 'S-a'), createdAt: NOW }];
      await repo.createSession(before, token(before));
      await repo.createSession(after, token(after), { maxLiveSessions: 1 });
      expect(await reasons('acme', 'c')).toEqual({ [before.sessionId]: 'session-limit', [after.sessionId]: null });
    });

    it('updatePersonal sets personal on the live sessions of one subject of one app, and counts them', async () => {
      const { repo } = await withApp();
      await repo.createApp(appRecord('other'), [key('other', 'current'), key('other', 'next')]);
      const [live, revoked, expired, otherSub, otherApp] = [session('acme', 'a'), session('acme', 'a'), { ...session('acme', 'a'), expiresAt: NOW - 1 }, session('acme', 'b'), session('other', 'a')];
      const first = token(live);
      for (const [s, t] of [[live, first], [revoked, token(revoked)], [expired, token(expired)], [otherSub, token(otherSub)], [otherApp, token(otherApp)]] as const) await repo.createSession(s, t);
      await repo.revokeSession(revoked.sessionId, 'client', NOW);
      expect(await repo.updatePersonal('acme', 'a', '{"name":"Ann"}', NOW)).toBe(1);
      expect((await repo.findRefreshToken(first.jid))?.session.personal).toBe('{"name":"Ann"}');
      const personal = async (appId: string, sub: string) => (await repo.listSessions(appId, sub)).map((s) => [s.sessionId, s.personal]);
      expect(await personal('acme', 'a')).toEqual(expect.arrayContaining([[live.sessionId, '{"name":"Ann"}'], [revoked.sessionId, null], [expired.sessionId, null]]));
      expect([...(await personal('acme', 'b')), ...(await personal('other', 'a'))].map(([, p]) => p)).toEqual([null, null]);
      expect(await repo.updatePersonal('acme', 'a', null, NOW)).toBe(1);
      expect((await repo.findRefreshToken(first.jid))?.session.personal).toBeNull();
    });

    it('recordServerStart replaces the master key ids and the JWKS caching a server start recorded, made of the one before; none before one', async () => {
      const repo = await open();
      expect(await repo.serverMasterKeys()).toEqual([]);
      expect(await repo.serverJwksCaching()).toBeNull();
      const seen: unknown[] = [];
      const caching = (value: JwksCaching) => (recorded: JwksCaching | null) => (seen.push(recorded), value);
      const first = { maxAgeSeconds: 300, former: null };
      expect(await repo.recordServerStart({ masterKeyIds: ['aaaa', 'bbbb'], jwksCaching: caching(first) }, NOW)).toEqual(first);
      expect((await repo.serverMasterKeys()).sort()).toEqual(['aaaa', 'bbbb']);
      expect(await repo.serverJwksCaching()).toEqual(first);
      const lowered = { maxAgeSeconds: 60, former: { maxAgeSeconds: 86_400, loweredAt: NOW + 1 } };
      await repo.recordServerStart({ masterKeyIds: ['cccc'], jwksCaching: caching(lowered) }, NOW + 1);
      expect(await repo.serverMasterKeys()).toEqual(['cccc']);
      expect(await repo.serverJwksCaching()).toEqual(lowered);
      await repo.recordServerStart({ masterKeyIds: ['cccc'], jwksCaching: caching(first) }, NOW + 2);
      expect(await repo.serverJwksCaching()).toEqual(first);
      expect(seen).toEqual([null, first, lowered]);
    });

    it('recordAuditOnce records an event unless the same one (name, app, client address) was recorded after a time', async () => {
      const { repo } = await withApp();
      const event = (id: string, at: number, fields: { event?: string; appId?: string | null; clientAddress?: string | null } = {}) => ({
        id, at, actor: 'server' as const, event: 'security.app_key_blocked', appId: 'acme', sub: null, sessionId: null, kid: null, clientAddress: '203.0.113.7', detail: null, ...fields,
      });
      expect(await repo.recordAuditOnce(event('E1', NOW), NOW - 10)).toBe(true);
      expect(await repo.recordAuditOnce(event('E2', NOW + 1), NOW - 10)).toBe(false); // the same, again
      expect(await repo.recordAuditOnce(event('E3', NOW + 2, { clientAddress: '203.0.113.8' }), NOW - 10)).toBe(true);
      expect(await repo.recordAuditOnce(event('E4', NOW + 3, { appId: 'other' }), NOW - 10)).toBe(true);
      expect(await repo.recordAuditOnce(event('E5', NOW + 4, { event: 'security.refresh_reuse' }), NOW - 10)).toBe(true);
      expect(await repo.recordAuditOnce(event('E6', NOW + 5, { appId: null, clientAddress: null }), NOW - 10)).toBe(true);
      expect(await repo.recordAuditOnce(event('E7', NOW + 6, { appId: null, clientAddress: null }), NOW - 10)).toBe(false);
      expect(await repo.recordAuditOnce(event('E8', NOW + 7), NOW)).toBe(true); // E1 is not after NOW
      expect((await repo.listAudit({ limit: 10 })).map((e) => e.id)).toEqual(['E8', 'E6', 'E5', 'E4', 'E3', 'E1']);
    });

    it('pruneAudit deletes the events from before a time, and only those', async () => {
      const { repo } = await withApp();
      const event = (id: string, at: number) => ({ id, at, actor: 'cli' as const, event: 'app.created', appId: 'acme', sub: null, sessionId: null, kid: null, clientAddress: null, detail: null });
      for (const [id, at] of [['E1', NOW - 2], ['E2', NOW - 1], ['E3', NOW], ['E4', NOW + 1]] as const) await repo.recordAudit(event(id, at));
      expect(await repo.pruneAudit(NOW)).toBe(2);
      expect((await repo.listAudit({ limit: 10 })).map((e) => e.id)).toEqual(['E4', 'E3']);
      expect(await repo.pruneAudit(NOW)).toBe(0);
    });

    it('pruneExpired: expired tokens go; a session goes with its newest token, or at its absolute end', async () => {
      const { repo } = await withApp();
      const hour = 3600;
      const chain = chainOf(repo);
      const ended = await chain(session('acme'), [hour, hour]); // its newest token has expired
      const live = await chain({ ...session('acme'), expiresAt: NOW + 5 * hour * 1000 }, [hour, 3 * hour]); // only an old one has
      const [outlived] = await chain({ ...session('acme'), expiresAt: NOW + 1000 }, [3 * hour]); // past its end, token not expired
      const revoked = session('acme');
      const [replayable] = await chain({ ...revoked, expiresAt: NOW + 5 * hour * 1000 }, [3 * hour]);
      await repo.revokeSession(revoked.sessionId, 'reuse', NOW);
      // The refresh TTL was shortened after its first token and lengthened again: its middle token expires first.
      const shortened = await chain({ ...session('acme'), expiresAt: NOW + 6 * hour * 1000 }, [3 * hour, hour, 5 * hour]);

      expect(await repo.pruneExpired(NOW + (hour + 1) * 1000)).toEqual({ refreshTokens: 3, sessions: 2 });
      for (const t of [...ended, live[0]!]) expect(await repo.findRefreshToken(t.jid)).toBeUndefined();
      expect((await repo.findRefreshToken(live[1]!.jid))?.session.revokedAt).toBeNull();
      // Its session is gone: the token, left to go by its own exp, is found by nothing.
      expect(await repo.findRefreshToken(outlived!.jid)).toBeUndefined();
      // Kept, so that a replay is refused as revoked (and audited as such), not as unknown.
      expect((await repo.findRefreshToken(replayable!.jid))?.session.revokeReason).toBe('reuse');
      expect(await repo.pruneExpired(NOW + (hour + 1) * 1000)).toEqual({ refreshTokens: 0, sessions: 0 });
      // A token goes only after its parent, which would otherwise look unused, and its session with it.
      expect((await repo.findRefreshToken(shortened[0]!.jid))?.child?.jid).toBe(shortened[1]!.jid);
      // Also gone then: the newest tokens of `live` and `revoked` with their sessions, and `outlived`.
      expect(await repo.pruneExpired(NOW + (3 * hour + 1) * 1000)).toEqual({ refreshTokens: 5, sessions: 2 });
      expect((await repo.findRefreshToken(shortened[2]!.jid))?.session.revokedAt).toBeNull();
    });

    it('pruneExpired goes down a long chain in one call, in batches with other work let in between; a token whose parent is kept waits', async () => {
      const { repo } = await withApp();
      const hour = 3600;
      const chain = chainOf(repo);
      const long = 4500; // more than a batch or two of any implementation worth the name
      const renewed = await chain({ ...session('acme'), expiresAt: NOW + 20 * hour * 1000 }, [...Array.from({ length: long - 1 }, (_, i) => hour + i), 10 * hour]);
      // The refresh TTL was shortened before its second token: that one expires first of all, its
      // parent last of all the expired; thousands of tokens lie between them.
      const shortened = await chain({ ...session('acme'), expiresAt: NOW + 20 * hour * 1000 }, [hour + long, hour - 1, 10 * hour]);
      let turns = 0;
      let pruning = true;
      const count = () => {
        turns++;
        if (pruning) setImmediate(count);
      };
      setImmediate(count);
      const pruned = await repo.pruneExpired(NOW + (hour + long) * 1000);
      pruning = false;
      // Every expired token of `renewed`, and shortened's first; its second waits for the next call.
      expect(pruned).toEqual({ refreshTokens: long, sessions: 0 });
      expect(turns).toBeGreaterThan(1);
      expect(await repo.findRefreshToken(renewed[long - 2]!.jid)).toBeUndefined();
      expect((await repo.findRefreshToken(renewed[long - 1]!.jid))?.session.revokedAt).toBeNull();
      expect(await repo.findRefreshToken(shortened[0]!.jid)).toBeUndefined();
      expect((await repo.findRefreshToken(shortened[1]!.jid))?.child?.jid).toBe(shortened[2]!.jid);
      expect(await repo.pruneExpired(NOW + (hour + long) * 1000)).toEqual({ refreshTokens: 1, sessions: 0 });
      expect((await repo.findRefreshToken(shortened[2]!.jid))?.session.revokedAt).toBeNull();
    });

    it('pruneExpired stops between batches once its signal is aborted; a later call finishes the work', async () => {
      const { repo } = await withApp();
      const hour = 3600;
      const long = 4500;
      const renewed = await chainOf(repo)({ ...session('acme'), expiresAt: NOW + 20 * hour * 1000 }, [...Array.from({ length: long - 1 }, () => hour), 10 * hour]);
      const stop = new AbortController();
      setImmediate(() => stop.abort());
      const first = await repo.pruneExpired(NOW + (hour + 1) * 1000, stop.signal);
      expect(first.refreshTokens).toBeGreaterThan(0);
      expect(first.refreshTokens).toBeLessThan(long - 1);
      const rest = await repo.pruneExpired(NOW + (hour + 1) * 1000);
      expect(first.refreshTokens + rest.refreshTokens).toBe(long - 1);
      expect((await repo.findRefreshToken(renewed[long - 1]!.jid))?.session.revokedAt).toBeNull();
    });
  });
}
