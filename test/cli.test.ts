import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/run.js';
import { canMountSmallDisk, client, fillDisk, harness, smallDisk, tempDir, verifyIndependently, type Harness, type Pair } from './helpers.js';
import { serverEntry, startServer, until } from './processes.js';

const run = promisify(execFile);
const cliEntry = path.resolve('dist/cli/main.js');

/** Runs the CLI in-process on the harness's database, with the harness's clock. */
async function cli(h: Harness, ...args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env: h.env, cwd: h.dir, clock: h.clock });
  const json = () => JSON.parse(stdout) as Record<string, unknown> & Array<Record<string, unknown>>;
  return { code, stdout, stderr, json };
}

describe('tokenmint app', () => {
  it('create --json prints app_id, app_key (once) and key_id; only the key\'s hash is stored', async () => {
    const h = await harness();
    const r = await cli(h, 'app', 'create', 'acme', '--json');
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const out = r.json();
    expect(Object.keys(out).sort()).toEqual(['app_id', 'app_key', 'key_id']);
    expect(out.app_id).toBe('acme');
    expect(out.app_key).toMatch(/^tmk_[A-Za-z0-9_-]{43}$/);
    expect((await h.tm.keyring.list('acme')).find((k) => k.state === 'current')?.kid).toBe(out.key_id);
    const file = fs.readFileSync(path.join(h.dir, 'tokenmint.db'));
    const wal = fs.readFileSync(path.join(h.dir, 'tokenmint.db-wal'));
    expect(Buffer.concat([file, wal]).includes(String(out.app_key))).toBe(false);
    // And it works on the running HTTP app at once.
    expect((await h.post('/app/acme/issue', { sub: 'u', ...client }, String(out.app_key))).status).toBe(200);
  });

  it('create takes every setting; list and show never print an app key', async () => {
    const h = await harness();
    const created = (await cli(h, 'app', 'create', 'acme', '--audience', 'api', '--access-ttl', '60', '--refresh-ttl', '600', '--refresh-nbf', '5', '--session-ttl', '86400', '--reuse-grace', '3', '--rotate-every', '0', '--max-sessions', '5', '--json')).json();
    const shown = await cli(h, 'app', 'show', 'acme', '--json');
    expect(shown.json()).toMatchObject({ app_id: 'acme', audience: 'api', access_ttl: 60, refresh_ttl: 600, refresh_nbf: 5, session_ttl: 86400, reuse_grace: 3, rotate_every: 0, max_sessions: 5, disabled: false });
    await cli(h, 'app', 'create', 'beta');
    expect((await cli(h, 'app', 'show', 'beta', '--json')).json()).toMatchObject({ max_sessions: 0 }); // no limit unless asked
    const list = await cli(h, 'app', 'list', '--json');
    expect(list.json().map((a) => a.app_id)).toEqual(['acme', 'beta']);
    for (const text of [shown.stdout, list.stdout]) {
      expect(text).not.toContain(String(created.app_key));
      expect(text).not.toMatch(/hash|tmk_/);
    }
  });

  it('takes lifetimes up to ten years, with which sessions list and keys rotate; one second more is refused', async () => {
    const h = await harness();
    const tenYears = String(315_360_000);
    const lifetimes = ['--access-ttl', tenYears, '--refresh-ttl', tenYears, '--session-ttl', tenYears, '--reuse-grace', tenYears, '--rotate-every', tenYears];
    const created = (await cli(h, 'app', 'create', 'acme', ...lifetimes, '--max-sessions', String(Number.MAX_SAFE_INTEGER), '--json')).json();
    const issued = await h.post('/app/acme/issue', { sub: 'u', ...client }, String(created.app_key));
    expect(issued.status).toBe(200);
    const listed = await h.post('/app/acme/sessions', { sub: 'u' }, String(created.app_key));
    expect([listed.status, ((await listed.json()) as { sessions: Array<{ expires_at: string }> }).sessions[0]?.expires_at]).toEqual([200, new Date(h.clock() + 315_360_000_000).toISOString()]);
    const cliListed = await cli(h, 'session', 'list', 'acme', '--sub', 'u', '--json');
    expect([cliListed.code, cliListed.json().length]).toEqual([0, 1]);
    h.clock.advance(3600);
    expect((await cli(h, 'key', 'rotate', 'acme', '--json')).code).toBe(0);
    const keys = await cli(h, 'key', 'list', 'acme', '--json');
    expect([keys.code, keys.json().map((k) => k.state).sort()]).toEqual([0, ['current', 'next', 'retired']]);
    for (const option of ['--access-ttl', '--refresh-ttl', '--session-ttl', '--reuse-grace', '--rotate-every']) {
      const refused = await cli(h, 'app', 'update', 'acme', option, '315360001', '--json');
      expect([refused.code, refused.stderr]).toEqual([1, expect.stringContaining(`${option}: must be at most 315360000 seconds (10 years)`)]);
    }
  });

  it('refuses bad input with a sentence on stderr and a non-zero exit', async () => {
    const h = await harness();
    await cli(h, 'app', 'create', 'acme');
    const cases: Array<[string[], RegExp]> = [
      [['app', 'create', 'acme'], /already exists/],
      [['app', 'create', 'Bad_Name'], /app_id: must be 1–63 characters of a-z 0-9 _ -, starting with a letter or digit$/m],
      [['app', 'create', '-x'], /unknown option|app_id/],
      [['app', 'create', 'a'.repeat(64)], /app_id: must be 1–63/],
      [['app', 'create', 'ok', '--access-ttl', 'soon'], /--access-ttl/],
      [['app', 'create', 'ok', '--refresh-ttl', '60', '--refresh-nbf', '60'], /refresh-nbf must be shorter than refresh-ttl/],
      [['app', 'create', 'ok', '--access-ttl', '30'], /--refresh-nbf: refresh-nbf must not be longer than access-ttl/], // default nbf 60
      // Until this version taken: every refresh token of the app expired before its nbf, so no session was ever renewed.
      [['app', 'create', 'ok', '--session-ttl', '60'], /--refresh-nbf: refresh-nbf must be shorter than session-ttl, or no session is ever renewed/],
      [['app', 'update', 'acme', '--refresh-nbf', '30', '--session-ttl', '30'], /refresh-nbf must be shorter than session-ttl/],
      [['app', 'update', 'acme', '--session-ttl', '0'], /--session-ttl: must be at least 1 second$/m],
      [['app', 'update', 'acme', '--audience', ''], /--audience: must not be empty$/m],
      [['app', 'update', 'acme'], /options: nothing to change: give the settings to change/], // until this version an app.updated of nothing
      [['app', 'update', 'acme', '--max-sessions', '-1'], /--max-sessions/],
      [['app', 'update', 'acme', '--max-sessions', '1.5'], /--max-sessions: must be a whole number/],
      // A number past 2^53 gets the bound alone: until this version also "must be a whole number" (zod's .int()).
      [['app', 'update', 'acme', '--access-ttl', '99999999999999999'], /^tokenmint: invalid request\n {2}--access-ttl: must be at most 315360000 seconds \(10 years\)\n$/],
      [['app', 'update', 'acme', '--max-sessions', '99999999999999999'], /^tokenmint: invalid request\n {2}--max-sessions: must be at most 9007199254740991\n$/],
      [['app', 'show', 'nope'], /no app "nope"/],
      [['app', 'disable', 'nope'], /no app "nope"/],
      [['app', 'rotate-secret', 'acme', '--grace', '-1'], /--grace/],
      // Until this version taken, after which app show and app list failed on a date no Date holds.
      [['app', 'rotate-secret', 'acme', '--grace', '9007199254740991'], /--grace: must be a whole number of seconds from 0 to 315360000 \(10 years\)/],
      // An empty or odd number (an unset "$VAR"): until this version Number() took '' and ' ' for 0, which
      // ended the old app key at once, stopped rotations, made refresh tokens renew at once.
      [['app', 'rotate-secret', 'acme', '--grace', ''], /--grace: must be a whole number of seconds/],
      [['app', 'update', 'acme', '--rotate-every', ''], /--rotate-every: must be a whole number of seconds/],
      [['app', 'update', 'acme', '--refresh-nbf', ' '], /--refresh-nbf: must be a whole number of seconds/],
      [['app', 'update', 'acme', '--reuse-grace', '1e3'], /--reuse-grace: must be a whole number of seconds/],
      [['app', 'update', 'acme', '--max-sessions', ''], /--max-sessions: must be a whole number/],
      [['audit', 'list', '--limit', ''], /--limit: must be a whole number, 1 or more/],
      // An empty filter named nothing and matched nothing: until this version "revoked 0", "no events".
      [['session', 'revoke', 'acme', '--sub', ''], /--sub: is empty \(an unset shell variable\?\); give what it names/],
      [['session', 'revoke', 'acme', '--session', ''], /--session: is empty/],
      [['session', 'list', 'acme', '--sub', ''], /--sub: is empty/],
      [['audit', 'list', '--app', ''], /--app: is empty/],
      [['audit', 'prune', '--before', '999999999999d'], /--before: 999999999999d back from now is before 1970/],
      [['audit', 'list', '--since', '999999999999d'], /--since: 999999999999d back from now is before 1970/],
      [['key', 'list', 'nope'], /no app "nope"/],
      [['key', 'revoke', 'acme', '01ARZ3NDEKTSV4RRFFQ69G5FAV'], /has no key/],
      [['session', 'revoke', 'acme'], /exactly one of --sub <sub>, --session <session_id> or --all/],
      [['session', 'revoke', 'acme', '--sub', 'u', '--all'], /exactly one of/],
      [['nonsense'], /unknown command/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(h, ...args, '--json');
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stdout, args.join(' ')).toBe('');
    }
    expect((await cli(h, 'app', 'list', '--json')).json()).toHaveLength(1);
    expect((await cli(h, 'app', 'show', 'acme', '--json')).json()).toMatchObject({ previous_app_key_valid_until: null });
  });

  it('update, disable and enable reach the running HTTP app with no restart', async () => {
    const h = await harness();
    const { app_key: appKey } = (await cli(h, 'app', 'create', 'acme', '--json')).json();
    const issue = () => h.post('/app/acme/issue', { sub: 'u', ...client }, String(appKey));
    expect((await cli(h, 'app', 'update', 'acme', '--access-ttl', '120', '--audience', 'mobile', '--json')).json()).toMatchObject({ access_ttl: 120, audience: 'mobile' });
    const pair = (await (await issue()).json()) as Pair;
    const claims = JSON.parse(Buffer.from(pair.auth_token.split('.')[1]!, 'base64url').toString());
    expect(claims.exp - claims.iat).toBe(120);
    expect(claims.aud).toBe('mobile');
    expect((await cli(h, 'app', 'disable', 'acme', '--json')).json()).toMatchObject({ disabled: true });
    expect((await issue()).status).toBe(403);
    expect((await h.app.request('/app/acme/jwks.json')).status).toBe(200);
    expect((await cli(h, 'app', 'enable', 'acme', '--json')).json()).toMatchObject({ disabled: false });
    expect((await issue()).status).toBe(200);
  });

  it('rotate-secret prints a new key; --grace keeps the old one working for that long', async () => {
    const h = await harness();
    const { app_key: oldKey } = (await cli(h, 'app', 'create', 'acme', '--json')).json();
    const r = (await cli(h, 'app', 'rotate-secret', 'acme', '--grace', '30', '--json')).json();
    expect(Object.keys(r).sort()).toEqual(['app_id', 'app_key']);
    const issue = (key: unknown) => h.post('/app/acme/issue', { sub: 'u', ...client }, String(key));
    expect((await issue(r.app_key)).status).toBe(200);
    expect((await issue(oldKey)).status).toBe(200);
    h.clock.advance(31);
    expect((await issue(oldKey)).status).toBe(403);
  });

  it('delete: only a disabled app with no session left, each refusal saying what to do; then its keys are gone, its JWKS 404, its history kept', async () => {
    const h = await harness();
    const { app_key: appKey, key_id: kid } = (await cli(h, 'app', 'create', 'acme', '--refresh-ttl', '600', '--refresh-nbf', '0', '--json')).json();
    await cli(h, 'app', 'create', 'beta');
    const pair = (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, String(appKey))).json()) as Pair;
    const remove = () => cli(h, 'app', 'delete', 'acme', '--json');

    let refused = await remove();
    expect([refused.code, refused.stderr]).toEqual([1, 'tokenmint: app "acme" is enabled: disable it first (`tokenmint app disable acme`), so that it issues nothing more\n']);
    await cli(h, 'app', 'disable', 'acme');
    await cli(h, 'session', 'revoke', 'acme', '--all');
    refused = await remove();
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('app "acme" still has 1 stored session(s): end them (`tokenmint session revoke acme --all`), then delete once pruning has removed them');
    h.clock.advance(601); // its refresh token expired: pruning may take the session
    await cli(h, 'prune');
    expect((await remove()).json()).toEqual({ app_id: 'acme', deleted: true });

    // Gone for the running server too (the catalog version moved), beta untouched.
    expect((await h.app.request('/app/acme/jwks.json')).status).toBe(404);
    expect((await h.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, String(appKey))).status).toBe(403);
    expect((await cli(h, 'app', 'list', '--json')).json().map((a) => a.app_id)).toEqual(['beta']);
    const db = new Database(h.config.databasePath, { readonly: true });
    expect(db.prepare("SELECT count(*) FROM signing_keys WHERE app_id = 'acme'").pluck().get()).toBe(0);
    db.close();
    expect((await cli(h, 'audit', 'list', '--app', 'acme', '--json')).json().map((e) => e.event).slice(0, 2)).toEqual(['app.deleted', 'session.revoked']);
    const unknown = await remove();
    expect([unknown.code, unknown.stderr]).toEqual([1, 'tokenmint: no app "acme"; see `tokenmint app list`\n']);
    // The id is free again: a new app under it, with new keys, renews nothing of the old one's.
    const again = (await cli(h, 'app', 'create', 'acme', '--json')).json();
    expect(again.key_id).not.toBe(kid);
    expect((await h.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, String(again.app_key))).status).toBe(401);
  });
});

describe('tokenmint app settings that are likely a mistake', () => {
  it('create and update warn on stderr when refresh-ttl is not longer than access-ttl, rotate-every shorter than the JWKS cache lifetime, or reuse-grace over a minute, and still do what they were asked', async () => {
    const h = await harness();
    const created = await cli(h, 'app', 'create', 'acme', '--access-ttl', '3600', '--refresh-ttl', '3600', '--json');
    expect(created.code).toBe(0);
    expect(created.json()).toMatchObject({ app_id: 'acme' });
    expect(created.stderr).toBe(
      'warning: refresh-ttl (3600 s) is not longer than access-ttl (3600 s): a client that renews when its auth token expires ' +
        '(as tokenmint/hono does) finds its refresh token expired too, and its user is logged out every access-ttl\n',
    );
    const updated = await cli(h, 'app', 'update', 'acme', '--access-ttl', '7200', '--json');
    expect([updated.code, updated.json().access_ttl, updated.stderr]).toEqual([0, 7200, expect.stringMatching(/^warning: refresh-ttl \(3600 s\) is not longer than access-ttl \(7200 s\)/)]);
    expect((await cli(h, 'app', 'update', 'acme', '--refresh-ttl', '7201', '--json')).stderr).toBe('');
    expect((await cli(h, 'app', 'create', 'other', '--json')).stderr).toBe(''); // the defaults: 10800 against 3600
    // A rotate-every under the JWKS cache lifetime (300 s here) is not what happens: rotations wait for it.
    expect((await cli(h, 'app', 'update', 'other', '--rotate-every', '60', '--json')).stderr).toBe(
      "warning: rotate-every (60 s) is shorter than the JWKS cache lifetime (300 s, the server's JWKS_MAX_AGE_SECONDS): a next key is promoted only once verifiers can have it, so keys rotate every 300 s\n",
    );
    expect((await cli(h, 'app', 'update', 'other', '--rotate-every', '300', '--json')).stderr).toBe('');
    expect((await cli(h, 'app', 'update', 'other', '--rotate-every', '0', '--json')).stderr).toBe(''); // never
    // A reuse grace is a window in which a copied refresh token still works and its reuse goes unnoticed.
    expect((await cli(h, 'app', 'update', 'other', '--reuse-grace', '61', '--json')).stderr).toBe(
      "warning: reuse-grace (61 s) is longer than a minute: for that long after a refresh token is used, whoever holds a copy of it gets the session's new pair, and the reuse is not detected\n",
    );
    expect((await cli(h, 'app', 'update', 'other', '--reuse-grace', '60', '--json')).stderr).toBe('');
  });
});

describe('tokenmint key', () => {
  it('list shows the keyring; rotate promotes next (warning when it was published too recently); revoke drops a key', async () => {
    const h = await harness();
    const { key_id: first, app_key: appKey } = (await cli(h, 'app', 'create', 'acme', '--json')).json();
    const keys = (await cli(h, 'key', 'list', 'acme', '--json')).json();
    expect(keys.map((k) => k.state).sort()).toEqual(['current', 'next']);
    expect(keys[0]).toEqual(expect.objectContaining({ kid: expect.any(String), state: expect.any(String), created_at: expect.any(String) }));
    const next = keys.find((k) => k.state === 'next')!.kid;

    const rotated = await cli(h, 'key', 'rotate', 'acme', '--json');
    expect(rotated.code).toBe(0);
    expect(rotated.json()).toEqual({ kid: next });
    expect(rotated.stderr).toMatch(/^warning: .*less than the JWKS cache lifetime/);
    const states = Object.fromEntries((await cli(h, 'key', 'list', 'acme', '--json')).json().map((k) => [k.kid, k.state]));
    expect(states[String(first)]).toBe('retired');
    expect(states[String(next)]).toBe('current');

    // A next key published longer ago than the JWKS cache lifetime rotates without a warning.
    h.clock.advance(h.config.jwksMaxAgeSeconds + 1);
    expect((await cli(h, 'key', 'rotate', 'acme', '--json')).stderr).toBe('');

    const current = (await h.tm.keyring.signer('acme')).kid;
    const revoked = await cli(h, 'key', 'revoke', 'acme', current, '--json');
    expect(revoked.json()).toEqual({ kid: current, state: 'revoked' });
    const jwks = (await (await h.app.request('/app/acme/jwks.json')).json()) as { keys: Array<{ kid: string }> };
    expect(jwks.keys.map((k) => k.kid)).not.toContain(current);
    // A new current key signs at once.
    const pair = (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, String(appKey))).json()) as Pair;
    expect(pair.key_id).not.toBe(current);
    expect(jwks.keys.map((k) => k.kid)).toContain(pair.key_id);
  });
});

describe('tokenmint key, from a shell without the server\'s JWKS_MAX_AGE_SECONDS', () => {
  it('rotate warns, and rotate --due waits, by the JWKS max-age the server last started with; by its own before any start', async () => {
    const h = await harness({ env: { JWKS_MAX_AGE_SECONDS: '3600' } });
    const shell = { ...h, env: { ...h.env, JWKS_MAX_AGE_SECONDS: undefined } }; // the default there: 300 s
    await cli(shell, 'app', 'create', 'acme', '--json');
    h.clock.advance(301);
    expect((await cli(shell, 'key', 'rotate', 'acme', '--json')).stderr).toBe(''); // no server has started: the shell's 300 s

    await h.tm.keyring.recordServerStart(); // as the server does at its start
    h.clock.advance(301);
    // Until this version: no warning, though verifiers cache the JWKS for an hour.
    expect((await cli(shell, 'key', 'rotate', 'acme', '--json')).stderr).toMatch(/^warning: key \w+ was published 301 s ago, less than the JWKS cache lifetime \(3600 s\)/);

    await cli(shell, 'app', 'create', 'beta', '--rotate-every', '60', '--json');
    h.clock.advance(301);
    expect((await cli(shell, 'key', 'rotate', '--due', '--json')).json()).toEqual({ rotated: [], pruned: 0 });
    h.clock.advance(3600 - 301);
    expect((await cli(shell, 'key', 'rotate', '--due', '--json')).json()).toEqual({ rotated: [{ app_id: 'beta', kid: expect.any(String) }], pruned: 0 });
  });

  it('rotate warns while verifiers may hold a JWKS cached under a max-age that a server restart lowered', async () => {
    const h = await harness({ env: { JWKS_MAX_AGE_SECONDS: '3600' } });
    await h.tm.keyring.recordServerStart();
    await cli(h, 'app', 'create', 'acme', '--json');
    h.clock.advance(3000);
    const env = { DATABASE_URL: String(h.env.DATABASE_URL), TOKENMINT_MASTER_KEY: String(h.env.TOKENMINT_MASTER_KEY), JWKS_MAX_AGE_SECONDS: '300' };
    await (await harness({ env, clock: h.clock })).tm.keyring.recordServerStart(); // the restart, at 12:50
    const shell = { ...h, env: { ...h.env, JWKS_MAX_AGE_SECONDS: undefined } };
    const rotate = async () => (await cli(shell, 'key', 'rotate', 'acme', '--json')).stderr;
    h.clock.advance(400);
    // Until this version: no warning, as the key had been published longer than the new 300 s.
    const lowered = "the server's JWKS cache lifetime was 3600 s until 2026-06-01T12:50:00.000Z, and a JWKS fetched before then may be cached that long";
    expect(await rotate()).toBe(`warning: key ${(await h.tm.keyring.signer('acme')).kid} was published 3400 s ago, but ${lowered}: a verifier holding an older cached JWKS may not know it until it refetches\n`);
    h.clock.advance(301);
    expect(await rotate()).toMatch(/^warning: key \w+ was published 301 s ago, but the server's JWKS cache lifetime was 3600 s until/);
    h.clock.advance(3600 - 701); // the JWKS fetched before the restart has run out
    expect(await rotate()).toBe('');
    h.clock.advance(299);
    expect(await rotate()).toMatch(/^warning: key \w+ was published 299 s ago, less than the JWKS cache lifetime \(300 s\)/);
  });
});

describe('tokenmint session', () => {
  it('--sub ends that subject\'s sessions, --all every session of the app', async () => {
    const h = await harness();
    const { app_key: appKey } = (await cli(h, 'app', 'create', 'acme', '--refresh-nbf', '0', '--json')).json();
    const issue = async (sub: string) => ((await (await h.post('/app/acme/issue', { sub, ...client }, String(appKey))).json()) as Pair).refresh_token;
    const tokens = { a1: await issue('a'), a2: await issue('a'), b: await issue('b'), c: await issue('c') };
    const renew = (t: string) => h.post('/app/acme/renew', { refresh_token: t, ...client }, String(appKey));
    expect((await cli(h, 'session', 'revoke', 'acme', '--sub', 'a', '--json')).json()).toEqual({ revoked: 2 });
    expect((await renew(tokens.a1)).status).toBe(401);
    expect((await renew(tokens.a2)).status).toBe(401);
    expect((await renew(tokens.b)).status).toBe(200);
    expect((await cli(h, 'session', 'revoke', 'acme', '--all', '--json')).json()).toEqual({ revoked: 2 });
    expect((await renew(tokens.c)).status).toBe(401);
  });

  it('list shows a subject\'s sessions, newest first, with the client that logged in; --session ends that one alone', async () => {
    const h = await harness();
    const { app_key: appKey } = (await cli(h, 'app', 'create', 'acme', '--refresh-nbf', '0', '--json')).json();
    await cli(h, 'app', 'create', 'other', '--json');
    const issue = async (sub: string, ip: string, useragent: string) =>
      ((await (await h.post('/app/acme/issue', { sub, ip, useragent }, String(appKey))).json()) as Pair).refresh_token;
    const laptop = await issue('a', '198.51.100.1', 'Firefox on the laptop');
    h.clock.advance(60);
    const phone = await issue('a', '2001:db8::7', 'Safari on the phone');
    await issue('b', '203.0.113.9', 'someone else');
    const renew = (t: string) => h.post('/app/acme/renew', { refresh_token: t, ip: '192.0.2.50', useragent: 'later' }, String(appKey));
    expect((await renew(laptop)).status).toBe(200); // a renew does not change what the session shows

    const listed = (await cli(h, 'session', 'list', 'acme', '--sub', 'a', '--json')).json();
    const created = h.clock() - 60_000;
    expect(listed).toEqual([
      { session_id: expect.any(String), created_at: new Date(created + 60_000).toISOString(), expires_at: new Date(created + 60_000 + 2_592_000_000).toISOString(), revoked_at: null, revoke_reason: null, ip: '2001:db8::7', useragent: 'Safari on the phone' },
      { session_id: expect.any(String), created_at: new Date(created).toISOString(), expires_at: new Date(created + 2_592_000_000).toISOString(), revoked_at: null, revoke_reason: null, ip: '198.51.100.1', useragent: 'Firefox on the laptop' },
    ]);
    const [phoneSession, laptopSession] = listed.map((s) => String(s.session_id));

    // Another app's id, or a session of another app, ends nothing.
    expect((await cli(h, 'session', 'revoke', 'other', '--session', laptopSession!, '--json')).json()).toEqual({ revoked: 0 });
    expect((await cli(h, 'session', 'revoke', 'acme', '--session', laptopSession!, '--json')).json()).toEqual({ revoked: 1 });
    expect((await cli(h, 'session', 'revoke', 'acme', '--session', laptopSession!, '--json')).json()).toEqual({ revoked: 0 });
    expect((await renew(phone)).status).toBe(200);
    const after = (await cli(h, 'session', 'list', 'acme', '--sub', 'a', '--json')).json();
    expect(after.map((s) => [s.session_id, s.revoke_reason])).toEqual([[phoneSession, null], [laptopSession, 'admin']]);
    expect(after[1]!.revoked_at).toBe(new Date(h.clock()).toISOString());
    // Newest first: the repeat, which ended nothing, then the one that did.
    const events = (await cli(h, 'audit', 'list', '--app', 'acme', '--json')).json().slice(0, 2);
    expect(events).toMatchObject([0, 1].map((count) => ({ event: 'session.revoked', actor: 'cli', session_id: laptopSession, detail: { all: false, count } })));

    expect((await cli(h, 'session', 'list', 'acme', '--sub', 'nobody', '--json')).json()).toEqual([]);
    expect((await cli(h, 'session', 'list', 'acme', '--sub', 'a')).stdout).toMatch(/ 2001:db8::7  Safari on the phone\n.*revoked .* \(admin\)  198\.51\.100\.1  Firefox on the laptop\n$/);
    const both = await cli(h, 'session', 'revoke', 'acme', '--sub', 'a', '--session', phoneSession!);
    expect([both.code, both.stderr]).toEqual([1, expect.stringContaining('give exactly one of --sub <sub>, --session <session_id> or --all')]);
    expect((await cli(h, 'session', 'list', 'nope', '--sub', 'a')).code).toBe(1);
  });

  it('human output shows what an end user wrote with its control characters escaped: it cannot drive the admin\'s terminal or forge a row', async () => {
    const h = await harness();
    const { app_key: appKey } = (await cli(h, 'app', 'create', 'acme', '--json')).json();
    // Sets the window title, clears the screen, forges a second row; a bidi override and a C1 CSI.
    const useragent = 'Firefox\x1b]0;owned\x07\x1b[2J\nrow 2\u202eevil\u009b31m';
    const sub = 'eve\x1b[8m\u2028';
    const post = (path: string, body: object) => h.post(`/app/acme/${path}`, body, String(appKey));
    expect((await post('issue', { sub, ip: '192.0.2.1', useragent })).status).toBe(200);
    expect((await post('revoke-subject', { sub })).status).toBe(200); // an audit event with that sub

    const listed = await cli(h, 'session', 'list', 'acme', '--sub', sub);
    const audit = await cli(h, 'audit', 'list', '--app', 'acme');
    for (const { stdout } of [listed, audit]) {
      expect(stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u202e]/); // only the rows' own line breaks
    }
    expect(listed.stdout.split('\n')).toHaveLength(2); // one row, and the final line break
    expect(listed.stdout).toContain('192.0.2.1  Firefox\\x1b]0;owned\\x07\\x1b[2J\\x0arow 2\\u202eevil\\x9b31m\n');
    expect(audit.stdout).toContain('sub=eve\\x1b[8m\\u2028');
    expect((await cli(h, 'session', 'list', 'acme', '--sub', 'nobody\x1b[2J')).stdout).toBe('no sessions of nobody\\x1b[2J in acme\n');
    // --json keeps the exact values.
    expect((await cli(h, 'session', 'list', 'acme', '--sub', sub, '--json')).json()[0]).toMatchObject({ useragent });
    expect((await cli(h, 'audit', 'list', '--app', 'acme', '--json')).json()[0]).toMatchObject({ event: 'session.revoked', sub });
  });
});

/**
 * After a lost master key (README: Backups): `key revoke` of acme's current key, twice, puts both keys
 * that sign under the master key of `env`; a server started with it then issues a pair that verifies.
 */
async function resumeSigning(cwd: string, env: NodeJS.ProcessEnv, appKey: string) {
  for (let i = 0; i < 2; i++) {
    const listed = JSON.parse((await run('node', [cliEntry, 'key', 'list', 'acme', '--json'], { cwd, env })).stdout) as Array<{ kid: string; state: string }>;
    await run('node', [cliEntry, 'key', 'revoke', 'acme', listed.find((k) => k.state === 'current')!.kid], { cwd, env });
  }
  const server = await startServer(env, cwd);
  const issued = await fetch(`${server.url}/app/acme/issue`, { method: 'POST', headers: { authorization: appKey }, body: JSON.stringify({ sub: 'u', ...client }) });
  expect(issued.status).toBe(200);
  const pair = (await issued.json()) as Pair;
  expect(verifyIndependently(pair.auth_token, pair.public_key).header).toMatchObject({ alg: 'ES256', kid: pair.key_id });
}

describe('the tokenmint bin', () => {
  it('creates keys/master.key and data/tokenmint.db (0600, folders 0700) under the working directory, and prints human output', async () => {
    const cwd = tempDir();
    const env = { PATH: process.env.PATH };
    const { stdout, stderr } = await run('node', [cliEntry, 'app', 'create', 'acme'], { cwd, env });
    expect(stderr).toContain(`database: ${path.join(cwd, 'data/tokenmint.db')}`);
    expect(stdout).toMatch(/app key \(shown this once; store it now\): tmk_/);
    expect(fs.statSync(path.join(cwd, 'keys/master.key')).mode & 0o777).toBe(0o600);
    // The database holds personal data and sealed keys: its user's alone too.
    expect(fs.statSync(path.join(cwd, 'data')).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(cwd, 'data/tokenmint.db')).mode & 0o777).toBe(0o600);
    const masterKey = fs.readFileSync(path.join(cwd, 'keys/master.key'), 'utf8');
    // Reused, not replaced, on the next start.
    const listed = await run('node', [cliEntry, 'app', 'list', '--json'], { cwd, env });
    expect(JSON.parse(listed.stdout)).toHaveLength(1);
    expect(fs.readFileSync(path.join(cwd, 'keys/master.key'), 'utf8')).toBe(masterKey);
  });

  it('a reader that stops reading its output (`| head -1`) is not a failure: no EPIPE stack trace, exit 0, and the command\'s change is made', async () => {
    const cwd = tempDir();
    const env = { PATH: process.env.PATH };
    await run('node', [cliEntry, 'app', 'create', 'acme'], { cwd, env });
    for (const args of [['app', 'list', '--json'], ['app', 'create', 'beta']]) {
      const child = spawn('node', [cliEntry, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.destroy(); // the reader is gone before the command writes
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect([code, stderr.replace(/^database: .*\n/, '')]).toEqual([0, '']);
    }
    expect(JSON.parse((await run('node', [cliEntry, 'app', 'list', '--json'], { cwd, env })).stdout)).toHaveLength(2);
  });

  it('run in a folder with no database (not the server\'s), only `app create` makes one: every other command says where it looked, exit 1, and leaves nothing behind', async () => {
    const cwd = tempDir();
    for (const env of [{ PATH: process.env.PATH }, { PATH: process.env.PATH, DATABASE_URL: 'elsewhere/tokenmint.db' }]) {
      for (const args of [['app', 'list', '--json'], ['audit', 'list'], ['key', 'rotate', '--due', '--json'], ['session', 'revoke', 'acme', '--all'], ['backup', 'copy.db'], ['master-key', 'rotate']]) {
        const failed = await run('node', [cliEntry, ...args], { cwd, env }).catch((e: { code: number; stdout: string; stderr: string }) => e);
        expect('code' in failed && [failed.code, failed.stdout]).toEqual([1, '']);
        const file = path.join(cwd, env.DATABASE_URL ?? 'data/tokenmint.db');
        const where = env.DATABASE_URL ? 'DATABASE_URL' : `DATABASE_URL is not set: data/tokenmint.db in the current folder, ${cwd}`;
        expect(failed.stderr).toContain(`tokenmint: no database at ${file} (${where}), and this command does not make one. Run it in the folder the server runs in`);
      }
    }
    // No empty database, no master key: until this version `app list` there left both, and printed [].
    expect(fs.readdirSync(cwd)).toEqual([]);
    const created = await run('node', [cliEntry, 'app', 'create', 'acme', '--json'], { cwd, env: { PATH: process.env.PATH } });
    expect(JSON.parse(created.stdout)).toMatchObject({ app_id: 'acme' });
    expect(fs.readdirSync(cwd).sort()).toEqual(['data', 'keys']);
  });

  it('is executable as built: npx runs it through a link to dist/cli/main.js, not through node', async () => {
    // npx links the package's bin once, into its own cache, and marks the file executable then; a
    // later build (a fresh clone at the same path, `rm -rf dist`) must not leave it 0644.
    expect(fs.statSync(cliEntry).mode & 0o111).toBe(0o111);
    const { stdout } = await run(cliEntry, ['--help'], { cwd: tempDir(), env: { PATH: process.env.PATH } });
    expect(stdout).toMatch(/^Usage: tokenmint /);
  });

  it('--version prints the package\'s version, which the server also names when it starts (stderr, log line, metrics)', async () => {
    const { version } = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string };
    const cwd = tempDir();
    expect(await run(cliEntry, ['--version'], { cwd, env: { PATH: process.env.PATH } })).toMatchObject({ stdout: `${version}\n` });
    expect(fs.readdirSync(cwd)).toEqual([]); // it opened nothing

    const env = { DATABASE_URL: path.join(cwd, 'tokenmint.db'), TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64') };
    const server = await startServer(env, cwd);
    expect(server.stderr()).toContain(`tokenmint ${version} listening on ${server.url}`);
    const logLine = () => server.stdout().split('\n').find((l) => l.includes('"msg":"listening"'));
    await until(() => logLine() !== undefined); // stdout is another pipe than the stderr line waited for
    expect(JSON.parse(logLine()!)).toMatchObject({ version, node: process.version });
    expect(await (await fetch(`${server.url}/metrics`)).text()).toContain(`tokenmint_build_info{version="${version}"} 1`);
    expect(await server.stop()).toBe(0);
  });

  it('installed without the dev dependencies (built, then npm prune --omit=dev): npx\'s prepare and npm start keep the built dist/ instead of failing on a missing tsc; with no dist/ either, a sentence', async () => {
    // The package's own scripts, in a folder with no node_modules/typescript, as after a prune.
    const cwd = tempDir();
    fs.copyFileSync('package.json', path.join(cwd, 'package.json'));
    const env = { PATH: process.env.PATH, HOME: cwd };
    const unbuilt = await run('npm', ['run', '--silent', 'build:if-possible'], { cwd, env }).catch((e: { code: number; stderr: string }) => e);
    expect('code' in unbuilt && unbuilt.code).toBe(1);
    expect(unbuilt.stderr).toContain('tokenmint: dist/ is not built and TypeScript is not installed: install with the dev dependencies (npm ci)');
    fs.mkdirSync(path.join(cwd, 'dist'));
    fs.writeFileSync(path.join(cwd, 'dist/server.js'), '');
    const built = await run('npm', ['run', '--silent', 'build:if-possible'], { cwd, env });
    expect(built.stderr).toBe('');
    expect(fs.readdirSync(path.join(cwd, 'dist'))).toEqual(['server.js']); // nothing was built over it
  });

  // As root only (CI is): the server is run as another user, nobody, and must be able to read this checkout.
  const NOBODY = 65534;
  const nobodyCanRun = (() => {
    if (process.getuid?.() !== 0) return false;
    try {
      execFileSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(serverEntry)}); require.resolve('better-sqlite3')`], { uid: NOBODY, gid: NOBODY, stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  it.skipIf(!nobodyCanRun)('files made by the CLI as one user, a server run as another: a sentence that names the owner, not a stack trace', async () => {
    const cwd = tempDir();
    fs.chmodSync(cwd, 0o755);
    await run('node', [cliEntry, 'app', 'create', 'acme'], { cwd, env: { PATH: process.env.PATH } }); // keys/ and data/, 0700, root's
    const asNobody = (env: NodeJS.ProcessEnv) =>
      run('node', [serverEntry], { cwd, env: { PATH: process.env.PATH, PORT: '0', WORKERS: '1', ...env }, uid: NOBODY, gid: NOBODY }).catch((e: { code: number; stderr: string }) => e);

    const keyFile = await asNobody({});
    expect('code' in keyFile && keyFile.code).toBe(1);
    expect(keyFile.stderr).toContain(`tokenmint: cannot read or create the master key file ${path.join(cwd, 'keys/master.key')}: EACCES`);
    expect(keyFile.stderr).toContain(`${path.join(cwd, 'keys')} belongs to uid 0, and tokenmint runs as `);
    expect(keyFile.stderr).toContain('run the server and the CLI as the same user');
    expect(keyFile.stderr).not.toMatch(/\n\s+at /);

    const database = await asNobody({ TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64') });
    expect('code' in database && database.code).toBe(1);
    expect(database.stderr).toContain(`tokenmint: cannot open the database ${path.join(cwd, 'data/tokenmint.db')}: EACCES`);
    expect(database.stderr).toContain(`${path.join(cwd, 'data')} belongs to uid 0`);
    // Nothing was created in their place.
    expect(fs.readdirSync(path.join(cwd, 'keys'))).toEqual(['master.key']);
  });

  it('a DATABASE_URL that is not a database: the CLI and the server say which file, in a sentence, and exit 1', async () => {
    const cwd = tempDir();
    const notADatabase = path.join(cwd, 'notes.txt');
    fs.writeFileSync(notADatabase, 'x'.repeat(4096));
    const env = { PATH: process.env.PATH, DATABASE_URL: notADatabase, PORT: '0', WORKERS: '1' };
    for (const entry of [[cliEntry, 'app', 'list'], [serverEntry]]) {
      const failed = await run('node', entry, { cwd, env }).catch((e: { code: number; stderr: string }) => e);
      expect('code' in failed && failed.code).toBe(1);
      expect(failed.stderr).toContain(`tokenmint: cannot open the database ${notADatabase}: file is not a database\n`);
      expect(failed.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    expect(fs.readFileSync(notADatabase, 'utf8')).toBe('x'.repeat(4096)); // and left as it was
  });

  it('a DATABASE_URL that is a folder: the CLI and the server say so, and name a file in it', async () => {
    const cwd = tempDir();
    const folder = path.join(cwd, 'data');
    fs.mkdirSync(folder);
    const env = { PATH: process.env.PATH, DATABASE_URL: folder, PORT: '0', WORKERS: '1' };
    for (const entry of [[cliEntry, 'app', 'list'], [cliEntry, 'app', 'create', 'acme'], [serverEntry]]) {
      const failed = await run('node', entry, { cwd, env }).catch((e: { code: number; stderr: string }) => e);
      expect('code' in failed && failed.code).toBe(1);
      // Until this version: "unable to open database file; check its permissions and those of its folder".
      expect(failed.stderr).toContain(`tokenmint: cannot open the database ${folder}: it is a folder: name the database file in it, such as ${folder}/tokenmint.db\n`);
    }
    expect(fs.readdirSync(folder)).toEqual([]);
  });

  it('refuses a master key file other users may read or write, the CLI and the server alike, until it is 0600 again', async () => {
    const cwd = tempDir();
    const env = { PATH: process.env.PATH };
    await run('node', [cliEntry, 'app', 'create', 'acme'], { cwd, env });
    const keyFile = path.join(cwd, 'keys/master.key');
    for (const mode of [0o644, 0o640, 0o602]) {
      fs.chmodSync(keyFile, mode);
      for (const entry of [[cliEntry, 'app', 'create', 'acme'], [serverEntry]]) {
        const failed = await run('node', entry, { cwd, env: { ...env, PORT: '0', WORKERS: '1' } }).catch((e: { code: number; stderr: string }) => e);
        expect('code' in failed && failed.code).toBe(1);
        expect(failed.stderr).toContain(`tokenmint: ${keyFile} is open to other users (mode 0${mode.toString(8)}); it opens every private key: make it this user's alone with \`chmod 600 ${keyFile}\``);
      }
    }
    fs.chmodSync(keyFile, 0o600);
    expect(JSON.parse((await run('node', [cliEntry, 'app', 'list', '--json'], { cwd, env })).stdout)).toHaveLength(1);
  });

  it('a folder where the master key file should be (a Docker bind mount of a missing file): the CLI and the server say so, whatever its mode', async () => {
    const cwd = tempDir();
    const keyFile = path.join(cwd, 'keys/master.key');
    for (const mode of [0o755, 0o700]) {
      fs.mkdirSync(keyFile, { recursive: true, mode });
      fs.chmodSync(keyFile, mode);
      for (const entry of [[cliEntry, 'app', 'create', 'acme'], [serverEntry]]) {
        const failed = await run('node', entry, { cwd, env: { PATH: process.env.PATH, PORT: '0', WORKERS: '1' } }).catch((e: { code: number; stderr: string }) => e);
        expect('code' in failed && failed.code).toBe(1);
        expect(failed.stderr).toContain(`tokenmint: ${keyFile} is a folder, not a key file (a Docker bind mount of a file missing on the host makes a folder there)`);
        expect(failed.stderr).not.toMatch(/\n\s+at /);
      }
    }
  });

  it.skipIf(!canMountSmallDisk())('a master key file that cannot be made (a read-only folder, as a container\'s read-only root; a full disk): the CLI and the server say so in a sentence, exit 1', async () => {
    const cwd = smallDisk('64k')!;
    const env = { PATH: process.env.PATH, PORT: '0', WORKERS: '1', DATABASE_URL: path.join(tempDir(), 'tokenmint.db') };
    const keyFile = path.join(cwd, 'keys/master.key');
    const expectations: Array<[() => void, string]> = [
      [() => execFileSync('mount', ['-o', 'remount,ro', cwd]), `; set TOKENMINT_MASTER_KEY instead, or run from a folder where keys/ can be written`],
      [() => (execFileSync('mount', ['-o', 'remount,rw', cwd]), fillDisk(cwd)), `; the disk holding ${path.dirname(keyFile)} has 0 KB free: make room on it`],
    ];
    for (const [prepare, advice] of expectations) {
      prepare();
      for (const entry of [[cliEntry, 'app', 'create', 'acme'], [serverEntry]]) {
        const failed = await run('node', entry, { cwd, env, timeout: 15_000 }).catch((e: { code: number; stderr: string }) => e);
        expect('code' in failed && failed.code).toBe(1);
        expect(failed.stderr).toContain(`tokenmint: cannot read or create the master key file ${keyFile}: `);
        expect(failed.stderr).toContain(advice);
        expect(failed.stderr).not.toMatch(/\n\s+at /); // until this version: a stack trace
      }
    }
  });

  it('processes started at once in a new folder agree on one master key and one database', async () => {
    // Each one creates keys/master.key, switches the new file to WAL and migrates it, or finds that
    // another did. Before all three were made safe, a scratch script that started four at once saw
    // one fail in about one round in ten, so three rounds catch a regression only some of the time.
    for (let round = 0; round < 3; round++) {
      const cwd = tempDir();
      const env = { PATH: process.env.PATH };
      const started = await Promise.all(Array.from({ length: 4 }, (_, i) => run('node', [cliEntry, 'app', 'create', `app${i}`, '--json'], { cwd, env })));
      for (const [i, { stdout }] of started.entries()) expect(JSON.parse(stdout)).toMatchObject({ app_id: `app${i}` });
      const listed = JSON.parse((await run('node', [cliEntry, 'app', 'list', '--json'], { cwd, env })).stdout) as Array<{ app_id: string }>;
      expect(listed.map((a) => a.app_id).sort()).toEqual(['app0', 'app1', 'app2', 'app3']);
      expect(fs.readdirSync(path.join(cwd, 'keys'))).toEqual(['master.key']);
      expect(Buffer.from(fs.readFileSync(path.join(cwd, 'keys/master.key'), 'utf8').trim(), 'base64')).toHaveLength(32);
    }
  });

  it('refuses a master key other than the one the database\'s keys are sealed under, before it seals or serves anything', async () => {
    const cwd = tempDir();
    const env = { PATH: process.env.PATH, DATABASE_URL: 'tokenmint.db' };
    const created = JSON.parse((await run('node', [cliEntry, 'app', 'create', 'acme', '--json'], { cwd, env })).stdout) as { app_key: string }; // sealed under keys/master.key
    const other = { ...env, TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64') };
    const refusal = /signing keys of app "acme" are sealed under master key [0-9a-f]{16}, but master key [0-9a-f]{16} was loaded \(from TOKENMINT_MASTER_KEY\)/;

    for (const args of [['app', 'create', 'other'], ['key', 'rotate', 'acme']]) {
      const failed = await run('node', [cliEntry, ...args], { cwd, env: other }).catch((e: { code: number; stderr: string }) => e);
      expect('code' in failed && failed.code).toBe(1);
      expect(failed.stderr).toMatch(refusal);
    }
    // What needs no private key still works with it, the kill switch first of all.
    expect(JSON.parse((await run('node', [cliEntry, 'session', 'revoke', 'acme', '--all', '--json'], { cwd, env: other })).stdout)).toEqual({ revoked: 0 });
    const keys = JSON.parse((await run('node', [cliEntry, 'key', 'list', 'acme', '--json'], { cwd, env })).stdout) as unknown[];
    expect(keys).toHaveLength(2); // nothing sealed under the other key
    expect(JSON.parse((await run('node', [cliEntry, 'app', 'list', '--json'], { cwd, env })).stdout)).toHaveLength(1);

    // The server exits at start, alone or as a cluster (whose workers would otherwise be restarted forever).
    for (const workers of ['1', '2']) {
      const server = await run('node', [path.resolve('dist/server.js')], { cwd, env: { ...other, PORT: '0', WORKERS: workers }, timeout: 20_000 }).catch((e: { code: number; stderr: string }) => e);
      expect('code' in server && server.code).toBe(1);
      expect(server.stderr).toMatch(refusal);
    }

    // The master key lost for good (README: Backups): revoking the current key twice puts both keys
    // that sign under the new one, and the server starts and issues with it.
    await resumeSigning(cwd, other, created.app_key);
  });

  it('the key file lost (README: Backups): the server, started once, makes a new one and stops; two `key revoke`s then put signing under it', async () => {
    const cwd = tempDir();
    const env = { PATH: process.env.PATH };
    const created = JSON.parse((await run('node', [cliEntry, 'app', 'create', 'acme', '--json'], { cwd, env })).stdout) as { app_key: string };
    const keyFile = path.join(cwd, 'keys/master.key');
    fs.rmSync(keyFile);
    const stopped = await run('node', [serverEntry], { cwd, env: { ...env, PORT: '0', WORKERS: '1' } }).catch((e: { code: number; stderr: string }) => e);
    expect('code' in stopped && stopped.code).toBe(1);
    expect(stopped.stderr).toMatch(new RegExp(`sealed under master key [0-9a-f]{16}, but master key [0-9a-f]{16} was loaded \\(from ${keyFile}\\)`));
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    await resumeSigning(cwd, env, created.app_key);
  });

  it('run without the server\'s TOKENMINT_MASTER_KEY in the server\'s folder: what needs no private key works, what seals refuses, and no stray keys/master.key is left', async () => {
    const cwd = tempDir();
    const serverEnv = { PATH: process.env.PATH, TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64') };
    await run('node', [cliEntry, 'app', 'create', 'acme'], { cwd, env: serverEnv });
    const env = { PATH: process.env.PATH }; // an admin's shell, without the server's environment
    for (const args of [['app', 'list', '--json'], ['key', 'list', 'acme', '--json'], ['session', 'revoke', 'acme', '--all', '--json'], ['key', 'rotate', '--due', '--json'], ['prune', '--json'], ['audit', 'list', '--json'], ['backup', 'copy.db']]) {
      await run('node', [cliEntry, ...args], { cwd, env });
    }
    const noKey = `no master key is loaded: TOKENMINT_MASTER_KEY is not set, and there is no key file at ${path.join(cwd, 'keys/master.key')}; run with the server's TOKENMINT_MASTER_KEY`;
    const listed = JSON.parse((await run('node', [cliEntry, 'key', 'list', 'acme', '--json'], { cwd, env })).stdout) as Array<{ kid: string; state: string }>;
    const current = listed.find((k) => k.state === 'current')!.kid;
    for (const args of [['app', 'create', 'other'], ['key', 'rotate', 'acme'], ['key', 'revoke', 'acme', current], ['master-key', 'rotate'], ['master-key', 'reseal']]) {
      const failed = await run('node', [cliEntry, ...args], { cwd, env }).catch((e: { code: number; stderr: string }) => e);
      expect('code' in failed && [args, failed.code]).toEqual([args, 1]);
      expect(failed.stderr).toContain(noKey);
    }
    // Until this version every one of these commands left a new random master key in keys/.
    expect(fs.readdirSync(cwd).sort()).toEqual(['copy.db', 'data']);
    // Nothing sealed, rotated or revoked (a revoke's replacement would have been sealed under a stray key).
    expect(JSON.parse((await run('node', [cliEntry, 'key', 'list', 'acme', '--json'], { cwd, env: serverEnv })).stdout)).toEqual(listed);
    await run('node', [cliEntry, 'key', 'rotate', 'acme'], { cwd, env: serverEnv });
  });

  it.each(['1', '2'])('the first app made from a shell without the server\'s master key is refused, once a server (WORKERS=%s) has started: no stray key file, no app whose every issue fails', async (workers) => {
    const cwd = tempDir();
    const serverEnv = { PATH: process.env.PATH, DATABASE_URL: path.join(cwd, 'data/tokenmint.db'), TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64'), WORKERS: workers, JWKS_MAX_AGE_SECONDS: '7200' };
    const server = await startServer(serverEnv, cwd);
    const elsewhere = tempDir(); // an admin's shell, in another folder, with the database's path alone
    const failed = await run('node', [cliEntry, 'app', 'create', 'acme'], { cwd: elsewhere, env: { PATH: process.env.PATH, DATABASE_URL: serverEnv.DATABASE_URL } }).catch((e: { code: number; stderr: string }) => e);
    expect('code' in failed && failed.code).toBe(1);
    expect(failed.stderr).toMatch(/tokenmint: the server last started with master key [0-9a-f]{16}, but no master key is loaded: TOKENMINT_MASTER_KEY is not set, and there is no key file at .*; run with the server's TOKENMINT_MASTER_KEY, or in the folder the server runs in/);
    // Another master key than the server's is refused as well.
    const otherKey = { PATH: process.env.PATH, DATABASE_URL: serverEnv.DATABASE_URL, TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64') };
    const refused = await run('node', [cliEntry, 'app', 'create', 'acme'], { cwd: elsewhere, env: otherKey }).catch((e: { code: number; stderr: string }) => e);
    expect('code' in refused && refused.code).toBe(1);
    expect(refused.stderr).toMatch(/but master key [0-9a-f]{16} was loaded \(from TOKENMINT_MASTER_KEY\); run with the server's TOKENMINT_MASTER_KEY/);
    // Until this version the first made keys/master.key here, sealed acme's keys under it, and the server answered every issue 500.
    expect(fs.readdirSync(elsewhere)).toEqual([]);
    const created = JSON.parse((await run('node', [cliEntry, 'app', 'create', 'acme', '--json'], { cwd: elsewhere, env: serverEnv })).stdout) as { app_key: string };
    const issued = await fetch(`${server.url}/app/acme/issue`, { method: 'POST', headers: { authorization: created.app_key }, body: JSON.stringify({ sub: 'u', ...client }) });
    expect(issued.status).toBe(200);
    // The server's start also recorded its JWKS max-age, which a shell without it warns by.
    const { JWKS_MAX_AGE_SECONDS: _, ...shellEnv } = serverEnv;
    expect((await run('node', [cliEntry, 'key', 'rotate', 'acme', '--json'], { cwd: elsewhere, env: shellEnv })).stderr).toMatch(/less than the JWKS cache lifetime \(7200 s\)/);
    expect(await server.stop()).toBe(0);
    // Restarted with a lower max-age, it says it still waits for the former one.
    const lowered = await startServer({ ...serverEnv, JWKS_MAX_AGE_SECONDS: '300' }, cwd);
    await until(() => lowered.stdout().includes('former_jwks_max_age_seconds'));
    const warning = lowered.stdout().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.former_jwks_max_age_seconds);
    expect(warning).toMatchObject({ level: 40, jwks_max_age_seconds: 300, former_jwks_max_age_seconds: 7200, msg: expect.stringMatching(/^JWKS_MAX_AGE_SECONDS was lowered/) });
    expect(Date.parse(String(warning?.until)) - Date.now()).toBeGreaterThan(7000_000);
    expect(await lowered.stop()).toBe(0);
  });

  it('exits non-zero with a sentence for a bad master key', async () => {
    const cwd = tempDir();
    const failed = await run('node', [cliEntry, 'app', 'create', 'acme'], { cwd, env: { PATH: process.env.PATH, TOKENMINT_MASTER_KEY: 'c2hvcnQ=' } }).catch((e: { code: number; stderr: string }) => e);
    expect('code' in failed && failed.code).toBe(1);
    expect(failed.stderr).toMatch(/master key must be 32 bytes/);
  });

  it('master-key rotate and reseal move every key to a new master key under a running server, no session lost; the old key can then go', async () => {
    const cwd = tempDir();
    const env = { PATH: process.env.PATH };
    const tokenmint = async (...args: string[]) => JSON.parse((await run('node', [cliEntry, ...args, '--json'], { cwd, env })).stdout) as Record<string, unknown> & Array<Record<string, unknown>>;
    const { app_key: appKey } = await tokenmint('app', 'create', 'acme', '--refresh-nbf', '0');
    const post = async (url: string, route: string, body: object) => {
      const res = await fetch(`${url}/app/acme/${route}`, { method: 'POST', headers: { authorization: String(appKey) }, body: JSON.stringify(body) });
      expect(res.status).toBe(200);
      const pair = (await res.json()) as Pair;
      expect(verifyIndependently(pair.auth_token, pair.public_key).payload.sub).toBe('u');
      return pair;
    };
    const keyFile = path.join(cwd, 'keys/master.key');
    const oldKey = fs.readFileSync(keyFile, 'utf8').trim();
    const sealedUnder = async () => (await tokenmint('key', 'list', 'acme')).map((k) => `${k.state} ${k.sealed_under}`);
    const oldId = (await sealedUnder())[0]!.split(' ')[1];
    let server = await startServer(env, cwd);
    let pair = await post(server.url, 'issue', { sub: 'u', ...client });

    const rotated = await tokenmint('master-key', 'rotate');
    expect(rotated).toEqual({ master_key_id: expect.stringMatching(/^[0-9a-f]{16}$/), previous_master_key_ids: [oldId] });
    const newId = rotated.master_key_id;
    const lines = fs.readFileSync(keyFile, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe(oldKey);
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);

    // With no restart, the server signs with a key the CLI sealed under the new master key (it reads
    // the key file again), and still with those sealed under the old one.
    await tokenmint('key', 'rotate', 'acme');
    pair = await post(server.url, 'renew', { refresh_token: pair.refresh_token, ...client }); // current: sealed under the old key
    await tokenmint('key', 'rotate', 'acme');
    expect(await sealedUnder()).toEqual([`retired ${oldId}`, `retired ${oldId}`, `current ${newId}`, `next ${newId}`]);
    pair = await post(server.url, 'renew', { refresh_token: pair.refresh_token, ...client });

    expect(await tokenmint('master-key', 'reseal')).toEqual({ master_key_id: newId, resealed: 2, not_loaded: [] });
    expect(await sealedUnder()).toEqual([`retired ${newId}`, `retired ${newId}`, `current ${newId}`, `next ${newId}`]);
    pair = await post(server.url, 'renew', { refresh_token: pair.refresh_token, ...client });

    // Nothing needs the old key now: without it the server starts, renews and rotates.
    fs.writeFileSync(keyFile, `${lines[0]}\n`);
    await server.stop();
    server = await startServer(env, cwd);
    pair = await post(server.url, 'renew', { refresh_token: pair.refresh_token, ...client });
    await tokenmint('key', 'rotate', 'acme');
    await post(server.url, 'renew', { refresh_token: pair.refresh_token, ...client });
    const events = (await tokenmint('audit', 'list')).map((e) => e.event);
    expect(events).toEqual(expect.arrayContaining(['master_key.added', 'master_key.resealed']));
  });

  it('TOKENMINT_MASTER_KEY takes several keys, comma-separated: the first seals, each opens its own; rotating it is left to the operator', async () => {
    const cwd = tempDir();
    const [a, b] = [randomBytes(32).toString('base64'), randomBytes(32).toString('base64')];
    const tokenmint = async (masterKeys: string, ...args: string[]) =>
      JSON.parse((await run('node', [cliEntry, ...args, '--json'], { cwd, env: { PATH: process.env.PATH, TOKENMINT_MASTER_KEY: masterKeys } })).stdout) as Record<string, unknown> & Array<Record<string, unknown>>;
    const refused = async (masterKeys: string, ...args: string[]) =>
      run('node', [cliEntry, ...args], { cwd, env: { PATH: process.env.PATH, TOKENMINT_MASTER_KEY: masterKeys } }).catch((e: { code: number; stderr: string }) => e);

    await tokenmint(a, 'app', 'create', 'acme');
    await tokenmint(`${b}, ${a}`, 'key', 'rotate', 'acme');
    const keys = await tokenmint(b, 'key', 'list', 'acme');
    const [idA, idB] = [keys.find((k) => k.state === 'current')!.sealed_under, keys.find((k) => k.state === 'next')!.sealed_under];
    expect(idA).not.toBe(idB);

    const rotate = await refused(`${b},${a}`, 'master-key', 'rotate');
    expect('code' in rotate && rotate.code).toBe(1);
    expect(rotate.stderr).toMatch(/TOKENMINT_MASTER_KEY is set, so the master keys are yours to change: put a new key .* first in it/);
    const twice = await refused(`${a},${a}`, 'app', 'list');
    expect(twice.stderr).toMatch(/TOKENMINT_MASTER_KEY lists the same master key twice/);
    // With b alone the current key (sealed under a) cannot sign: refused, naming both.
    expect((await refused(b, 'key', 'rotate', 'acme')).stderr).toContain(`sealed under master key ${idA}, but master key ${idB} was loaded`);

    expect(await tokenmint(`${b},${a}`, 'master-key', 'reseal')).toEqual({ master_key_id: idB, resealed: 2, not_loaded: [] });
    await tokenmint(b, 'key', 'rotate', 'acme'); // b alone now opens every key that may sign
    // And back: each of the four keys (two retired, current, next) to a.
    expect(await tokenmint(`${a},${b}`, 'master-key', 'reseal')).toEqual({ master_key_id: idA, resealed: 4, not_loaded: [] });
    // A key under a master key that is not loaded is named and left as it is, not lost.
    const c = randomBytes(32).toString('base64');
    await tokenmint(`${c},${a}`, 'key', 'rotate', 'acme');
    const next = (await tokenmint(a, 'key', 'list', 'acme')).find((k) => k.state === 'next')!;
    expect(await tokenmint(a, 'master-key', 'reseal')).toEqual({ master_key_id: idA, resealed: 0, not_loaded: [{ app_id: 'acme', kid: next.kid, sealed_under: next.sealed_under }] });
  });

  it('a backup that cannot be written (a path through a file; a full disk, where this user may mount a small tmpfs) says which file and why, exit 1, and leaves nothing under that name', async () => {
    const cwd = tempDir();
    const env = { PATH: process.env.PATH, TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64') };
    await run('node', [cliEntry, 'app', 'create', 'acme', '--json'], { cwd, env }); // a file of about 100 KB
    fs.writeFileSync(path.join(cwd, 'afile'), '');
    const cases: Array<[string, RegExp]> = [[path.join(cwd, 'afile/copy.db'), /EEXIST|ENOTDIR/]];
    const tiny = smallDisk('16k'); // not root, or no right to mount: the first case only
    if (tiny) cases.push([path.join(tiny, 'copy.db'), /database or disk is full/]);
    for (const [target, why] of cases) {
      const failed = await run('node', [cliEntry, 'backup', target, '--json'], { cwd, env }).catch((e: { code: number; stdout: string; stderr: string }) => e);
      expect('code' in failed && [failed.code, failed.stdout]).toEqual([1, '']); // until this version: exit 70, "unexpected error"
      expect(failed.stderr).toContain(`tokenmint: cannot write the backup ${target}: `);
      expect(failed.stderr).toMatch(why);
      expect(failed.stderr).toContain('nothing was left under that name');
      expect(fs.existsSync(target)).toBe(false);
    }
    if (tiny) expect(fs.readdirSync(tiny)).toEqual([]); // the partial copy went too
  });

  it('a backup given a folder (`backups/`, or one that exists) asks for a file name in it, and writes nothing', async () => {
    const cwd = tempDir();
    const env = { PATH: process.env.PATH, TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64') };
    await run('node', [cliEntry, 'app', 'create', 'acme', '--json'], { cwd, env });
    fs.mkdirSync(path.join(cwd, 'existing'));
    for (const folder of ['backups/', 'existing', 'existing/']) {
      const failed = await run('node', [cliEntry, 'backup', folder], { cwd, env }).catch((e: { code: number; stderr: string }) => e);
      expect('code' in failed && failed.code).toBe(1);
      const target = path.join(cwd, folder.replace(/\/$/, ''));
      expect(failed.stderr).toMatch(new RegExp(`file: ${target} is a folder: name the new file in it, such as ${target}/tokenmint-\\d{4}-\\d{2}-\\d{2}\\.db`));
    }
    // Until this version `backup backups/` wrote a file named backups.
    expect(fs.readdirSync(cwd).sort()).toEqual(['data', 'existing']); // the master key is in the environment
    expect(fs.readdirSync(path.join(cwd, 'existing'))).toEqual([]);
  });

  it('a backup killed halfway leaves no file under the name asked for: whatever is there is a whole copy', async () => {
    const cwd = tempDir();
    const env = { PATH: process.env.PATH, TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64') };
    await run('node', [cliEntry, 'app', 'create', 'acme', '--json'], { cwd, env });
    // ~40 MB of audit events, so that writing the copy takes a while.
    const db = new Database(path.join(cwd, 'data/tokenmint.db'));
    const insert = db.prepare("INSERT INTO audit_events (id, at, actor, event, detail) VALUES (?, 0, 'cli', 'filler', ?)");
    db.transaction(() => {
      for (let i = 0; i < 100_000; i++) insert.run(String(i).padStart(10, '0'), 'x'.repeat(400));
    })();
    const events = db.prepare('SELECT count(*) FROM audit_events').pluck().get();
    db.close();
    const backup = (file: string) => {
      const child = execFile(process.execPath, [cliEntry, 'backup', file, '--json'], { cwd, env });
      let done = false;
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => ((done = true), resolve(code))));
      // Resolves once the backup writes its copy (its partial file is there), or has exited.
      const writing = async () => {
        const partial = `${path.basename(file)}.partial-`;
        while (!done && !fs.readdirSync(path.join(cwd, 'backups')).some((name) => name.startsWith(partial))) await new Promise((resolve) => setTimeout(resolve, 1));
      };
      return { child, exited, writing };
    };
    fs.mkdirSync(path.join(cwd, 'backups'), { mode: 0o700 });
    const first = backup('backups/whole.db');
    await first.writing();
    const startedWriting = Date.now();
    expect(await first.exited).toBe(0);
    const writeMs = Date.now() - startedWriting;
    // Killed at moments spread over the time a backup writes its copy, the first as it starts. (Timed
    // from the start of the process, as until this version, the kills all fell before the copy on a
    // machine whose Node took longer to start.)
    for (let i = 0; i < 8; i++) {
      const file = path.join(cwd, `backups/killed-${i}.db`);
      const { child, exited, writing } = backup(file);
      await writing();
      await new Promise((resolve) => setTimeout(resolve, (writeMs * i) / 8));
      child.kill('SIGKILL');
      await exited;
      if (!fs.existsSync(file)) continue;
      const copy = new Database(file, { readonly: true });
      try {
        expect(copy.pragma('integrity_check', { simple: true })).toBe('ok');
        expect(copy.prepare('SELECT count(*) FROM audit_events').pluck().get()).toBe(events);
      } finally {
        copy.close();
      }
    }
    // What the kills left is named by the next backup into that folder, and left there: only the
    // operator knows that no backup of another host is writing it.
    const leftovers = fs.readdirSync(path.join(cwd, 'backups')).filter((name) => name.includes('.partial-')).sort();
    expect(leftovers.length).toBeGreaterThan(0);
    const next = await run('node', [cliEntry, 'backup', 'backups/next.db', '--json'], { cwd, env });
    expect(JSON.parse(next.stdout)).toMatchObject({ file: path.join(cwd, 'backups/next.db') });
    expect(next.stderr).toMatch(new RegExp(`^warning: ${path.join(cwd, 'backups')} holds ${leftovers.length} files? \\([\\d.]+ MB\\) left by killed backups, not backups: ${leftovers.join(', ').replace(/[.]/g, '\\.')}; delete them once no backup is running\n$`));
    expect(fs.readdirSync(path.join(cwd, 'backups')).filter((name) => name.includes('.partial-')).sort()).toEqual(leftovers);
    // A partial file of a backup still running (this process's pid) is not named.
    fs.writeFileSync(path.join(cwd, `backups/other.db.partial-${process.pid}-0123abcd`), '');
    for (const name of leftovers) fs.rmSync(path.join(cwd, 'backups', name));
    expect((await run('node', [cliEntry, 'backup', 'backups/last.db', '--json'], { cwd, env })).stderr).toBe('');
  });

  it('backup copies the live database while the server renews; the copy, its user\'s alone, serves the sessions it holds', async () => {
    const cwd = tempDir();
    const env = { PATH: process.env.PATH, TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64') };
    const { app_key: appKey } = JSON.parse((await run('node', [cliEntry, 'app', 'create', 'acme', '--refresh-nbf', '0', '--json'], { cwd, env })).stdout) as { app_key: string };
    const server = await startServer(env, cwd);
    const call = async (route: string, body: object) => {
      const res = await fetch(`${server.url}/app/acme/${route}`, { method: 'POST', headers: { authorization: appKey }, body: JSON.stringify(body) });
      expect(res.status).toBe(200);
      return (await res.json()) as Pair;
    };
    const kept = await call('issue', { sub: 'kept', ...client }); // never renewed: still unused in the copy
    // Chains of renews run against the server during the backup.
    let renewing = true;
    const chains = Array.from({ length: 4 }, async (_, i) => {
      let pair = await call('issue', { sub: `busy-${i}`, ...client });
      let renews = 0;
      for (; renewing || renews === 0; renews++) pair = await call('renew', { refresh_token: pair.refresh_token, ...client });
      return renews;
    });

    const { stdout } = await run('node', [cliEntry, 'backup', 'backups/tokenmint.db', '--json'], { cwd, env });
    renewing = false;
    expect(Math.min(...(await Promise.all(chains)))).toBeGreaterThan(0);
    const file = path.join(cwd, 'backups/tokenmint.db');
    expect(JSON.parse(stdout)).toEqual({ file, bytes: fs.statSync(file).size });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const copy = new Database(file, { readonly: true });
    expect(copy.pragma('integrity_check', { simple: true })).toBe('ok');
    copy.close();
    // Never over an existing file, the live database least of all.
    for (const target of ['backups/tokenmint.db', 'data/tokenmint.db']) {
      const failed = await run('node', [cliEntry, 'backup', target], { cwd, env }).catch((e: { code: number; stderr: string }) => e);
      expect('code' in failed && failed.code).toBe(1);
      expect(failed.stderr).toContain(`${path.join(cwd, target)} already exists; back up to a new file`);
    }
    await server.stop();

    // Restored (README: Backups), the copy renews what it holds, with the same master key.
    const restored = await startServer({ ...env, DATABASE_URL: file }, cwd);
    const res = await fetch(`${restored.url}/app/acme/renew`, { method: 'POST', headers: { authorization: appKey }, body: JSON.stringify({ refresh_token: kept.refresh_token, ...client }) });
    expect(res.status).toBe(200);
    const pair = (await res.json()) as Pair;
    expect(verifyIndependently(pair.auth_token, pair.public_key).payload).toMatchObject({ iss: 'acme', sub: 'kept' });
  });
});
