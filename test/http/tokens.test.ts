import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { client, decodePart, harness, verifyIndependently, type Harness, type Pair } from '../helpers.js';

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

describe('POST /app/:app_id/issue', () => {
  it('answers a pair whose tokens carry the contract claims, verified with node:crypto', async () => {
    const h = await harness();
    const { appId, appKey, kid } = await h.createApp('acme', { accessTtlSeconds: 600, refreshTtlSeconds: 7200, refreshNbfSeconds: 30 });
    const res = await h.post(`/app/${appId}/issue`, { sub: 'user-1', ...client, personal: { name: 'Ann', roles: ['admin'] } }, appKey);
    expect(res.status).toBe(200);
    const pair = (await res.json()) as Pair;
    expect(Object.keys(pair).sort()).toEqual(['auth_token', 'key_id', 'public_key', 'refresh_token']);
    expect(pair.key_id).toBe(kid);
    expect(Buffer.from(pair.public_key, 'base64').toString()).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);

    const now = Math.floor(h.clock() / 1000);
    const auth = verifyIndependently(pair.auth_token, pair.public_key);
    expect(auth.header).toEqual({ alg: 'ES256', kid, typ: 'JWT' });
    expect(auth.payload).toEqual({
      iss: 'acme',
      aud: 'web-app',
      sub: 'user-1',
      jid: expect.stringMatching(ULID),
      iat: now,
      nbf: now,
      exp: now + 600,
      ip: client.ip,
      useragent: client.useragent,
      personal: { name: 'Ann', roles: ['admin'] },
    });
    const refresh = verifyIndependently(pair.refresh_token, pair.public_key);
    expect(refresh.header).toEqual({ alg: 'ES256', kid, typ: 'JWT' });
    expect(refresh.payload).toEqual({ iss: 'acme', jid: auth.payload.jid, iat: now, nbf: now + 30, exp: now + 7200, type: 'refresh' });
  });

  it('accepts the app key with or without "Bearer", and omits personal when not given', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp();
    for (const authorization of [appKey, `Bearer ${appKey}`]) {
      const res = await h.post(`/app/${appId}/issue`, { sub: 's', ...client }, authorization);
      expect(res.status).toBe(200);
      expect(decodePart(((await res.json()) as Pair).auth_token, 1)).not.toHaveProperty('personal');
    }
  });

  it('answers 400 with each invalid field: its path, and what is wrong in words', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp();
    // Until this version zod's own words for most: "Invalid input: expected string, received undefined".
    const cases: Array<[unknown, string, string]> = [
      [{ ...client }, 'sub', 'is required'],
      [{ sub: '', ...client }, 'sub', 'must not be empty'],
      [{ sub: 'x'.repeat(256), ...client }, 'sub', 'must be at most 255 characters'],
      [{ sub: 7, ...client }, 'sub', 'must be a string'],
      [{ sub: 's', ...client, ip: undefined }, 'ip', 'is required'],
      [{ sub: 's', ...client, ip: 7 }, 'ip', 'must be an IPv4 or IPv6 address'],
      [{ sub: 's', ...client, ip: '999.1.1.1' }, 'ip', 'must be an IPv4 or IPv6 address'],
      [{ sub: 's', ...client, ip: 'localhost' }, 'ip', 'must be an IPv4 or IPv6 address'],
      [{ sub: 's', ...client, useragent: '' }, 'useragent', 'must not be empty'],
      [{ sub: 's', ...client, useragent: 'u'.repeat(1025) }, 'useragent', 'must be at most 1024 characters'],
      [{ sub: 's', ...client, personal: [1, 2] }, 'personal', 'must be a JSON object'],
      [{ sub: 's', ...client, personal: 'me' }, 'personal', 'must be a JSON object'],
      [{ sub: 's', ...client, personal: { blob: 'x'.repeat(4100) } }, 'personal', 'must be at most 4096 bytes of JSON'],
      [[1, 2, 3], '', 'the body must be a JSON object'],
      [null, '', 'the body must be a JSON object'],
    ];
    for (const [body, path, message] of cases) {
      const res = await h.post(`/app/${appId}/issue`, body, appKey);
      expect([res.status, await res.json()], JSON.stringify(body).slice(0, 80)).toEqual([400, { message: 'invalid request', errors: [{ path, message }] }]);
    }
    // Every field at once, in the order of the body's schema; on the other routes too.
    expect(await (await h.post(`/app/${appId}/issue`, {}, appKey)).json()).toEqual({
      message: 'invalid request',
      errors: ['sub', 'ip', 'useragent'].map((path) => ({ path, message: 'is required' })),
    });
    expect(await (await h.post(`/app/${appId}/renew`, { refresh_token: '', ip: '::1' }, appKey)).json()).toEqual({
      message: 'invalid request',
      errors: [
        { path: 'refresh_token', message: 'must not be empty' },
        { path: 'useragent', message: 'is required' },
      ],
    });
    expect(await (await h.post(`/app/${appId}/revoke-session`, { sub: 's', session_id: 7 }, appKey)).json()).toEqual({
      message: 'invalid request',
      errors: [{ path: 'session_id', message: 'must be a string' }],
    });
    expect(await (await h.post(`/app/${appId}/update-personal`, { sub: 's' }, appKey)).json()).toEqual({
      message: 'invalid request',
      errors: [{ path: 'personal', message: 'is required' }],
    });
    // IPv6 is an address too.
    expect((await h.post(`/app/${appId}/issue`, { sub: 's', ...client, ip: '2001:db8::1' }, appKey)).status).toBe(200);
    // Characters are code points, as JSON Schema counts them: 255 emoji are a subject (510 UTF-16 units), 256 are not.
    const emoji = (n: number) => '\u{1F600}'.repeat(n);
    const taken = await h.post(`/app/${appId}/issue`, { sub: emoji(255), ...client, useragent: emoji(1024) }, appKey);
    expect(taken.status).toBe(200);
    expect(decodePart(((await taken.json()) as Pair).auth_token, 1)).toMatchObject({ sub: emoji(255), useragent: emoji(1024) });
    const over = await h.post(`/app/${appId}/issue`, { sub: emoji(256), ...client }, appKey);
    expect(await over.json()).toEqual({ message: 'invalid request', errors: [{ path: 'sub', message: 'must be at most 255 characters' }] });
  });

  it('answers 400 for a body that is not JSON, whatever the content type', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp();
    for (const body of ['{"sub":', '', 'sub=x']) {
      const res = await h.post(`/app/${appId}/issue`, body, appKey, { 'content-type': 'text/plain' });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ message: 'invalid request', errors: [{ path: '', message: 'body is not valid JSON' }] });
    }
    // A compressed body is not read, and the error says why; until this version it said only "not valid JSON".
    const gzipped = await h.app.request(`/app/${appId}/issue`, { method: 'POST', headers: { authorization: appKey, 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify({ sub: 'u', ...client })) });
    expect([gzipped.status, await gzipped.json()]).toEqual([400, { message: 'invalid request', errors: [{ path: '', message: 'body is not valid JSON, and Content-Encoding gzip is not supported: send it uncompressed' }] }]);
    // A UTF-8 byte order mark is skipped (RFC 8259 §8.1 lets a parser ignore it).
    const marked = await h.app.request(`/app/${appId}/issue`, { method: 'POST', headers: { authorization: appKey }, body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ sub: 'u', ...client }))]) });
    expect(marked.status).toBe(200);
    // JSON is UTF-8 (RFC 8259 §8.1). Bytes that are not UTF-8 are refused, not read as U+FFFD: a backend
    // sending Latin-1 would otherwise have "José" and "Josè" issued as one subject, "Jos\uFFFD".
    for (const name of ['Jos\u00e9', 'Jos\u00e8']) {
      const latin1 = Buffer.from(JSON.stringify({ sub: name, ...client }), 'latin1');
      const res = await h.app.request(`/app/${appId}/issue`, { method: 'POST', headers: { authorization: appKey, 'content-type': 'application/json; charset=iso-8859-1' }, body: latin1 });
      expect([res.status, await res.json()]).toEqual([400, { message: 'invalid request', errors: [{ path: '', message: 'body is not valid JSON: it is not UTF-8' }] }]);
    }
    const utf8 = await h.app.request(`/app/${appId}/issue`, { method: 'POST', headers: { authorization: appKey }, body: Buffer.from(JSON.stringify({ sub: 'Jos\u00e9', ...client }), 'utf8') });
    expect(decodePart(((await utf8.json()) as Pair).auth_token, 1)).toMatchObject({ sub: 'Jos\u00e9' });
  });

  it('answers 413 for a body over 64 KiB', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp();
    const res = await h.post(`/app/${appId}/issue`, { sub: 's', ...client, pad: 'x'.repeat(65 * 1024) }, appKey);
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual({ message: 'request too large' });
  });

  it('refuses text with an unpaired surrogate (SQLite would store U+FFFD, and the subject change at renew); a pair such as an emoji stays as sent', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp('acme', { refreshNbfSeconds: 0 });
    const issue = (fields: string) => h.post(`/app/${appId}/issue`, `{"sub":"s","ip":"${client.ip}","useragent":"u",${fields}}`, appKey);
    for (const [fields, path] of [['"sub":"a\\ud800b"', 'sub'], ['"useragent":"\\udfff"', 'useragent'], ['"personal":{"name":["\\ud83d"]}', 'personal'], ['"personal":{"\\udc00":1}', 'personal']]) {
      const res = await issue(fields!);
      expect([res.status, await res.json()]).toEqual([400, { message: 'invalid request', errors: [{ path, message: 'must be valid Unicode: no unpaired surrogate' }] }]);
    }
    const res = await issue('"sub":"\\ud83d\\ude00 ann","personal":{"mood":"\\ud83d\\ude00"}');
    expect(res.status).toBe(200);
    const renewed = (await (await h.post(`/app/${appId}/renew`, { refresh_token: ((await res.json()) as Pair).refresh_token, ...client }, appKey)).json()) as Pair;
    expect(decodePart(renewed.auth_token, 1)).toMatchObject({ sub: '\u{1F600} ann', personal: { mood: '\u{1F600}' } });
  });

  it('answers 400, not 500, for a personal nested past what JSON.stringify takes; nesting that fits in 4 KiB is kept', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp();
    const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
    const issue = (depth: number) => h.post(`/app/${appId}/issue`, `{"sub":"s","ip":"${client.ip}","useragent":"u","personal":{"a":${nested(depth)}}}`, appKey);
    const deep = await issue(20_000); // 40 KB, under the 64 KiB body limit; until this version a 500
    expect([deep.status, await deep.json()]).toEqual([400, { message: 'invalid request', errors: [{ path: 'personal', message: 'must be at most 4096 bytes of JSON' }] }]);
    const fits = await issue(2_040); // 4,087 bytes of JSON
    expect(fits.status).toBe(200);
    expect(JSON.stringify(decodePart(((await fits.json()) as Pair).auth_token, 1).personal)).toBe(`{"a":${nested(2_040)}}`);
  });

  it('keeps a "__proto__" key in personal as plain data', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp();
    const res = await h.post(`/app/${appId}/issue`, `{"sub":"s","ip":"${client.ip}","useragent":"u","personal":{"__proto__":{"admin":true},"a":1}}`, appKey);
    expect(res.status).toBe(200);
    const payload = decodePart(((await res.json()) as Pair).auth_token, 1);
    expect(JSON.stringify(payload.personal)).toBe('{"__proto__":{"admin":true},"a":1}');
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  it('refuses a number in personal past what a double holds (1e400): it was signed as null', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp();
    const personal = (value: string) => `{"sub":"s","ip":"${client.ip}","useragent":"u","personal":{"a":[1,{"n":${value}}]}}`;
    for (const value of ['1e400', '-1e400']) {
      const res = await h.post(`/app/${appId}/issue`, personal(value), appKey);
      expect([res.status, await res.json()], value).toEqual([400, { message: 'invalid request', errors: [{ path: 'personal', message: 'must not hold a number past what a double holds (such as 1e400): it would be signed as null' }] }]);
      const update = await h.post(`/app/${appId}/update-personal`, `{"sub":"s","personal":{"n":${value}}}`, appKey);
      expect(update.status, value).toBe(400);
    }
    // The largest double is a number still: kept, as JSON writes it.
    const res = await h.post(`/app/${appId}/issue`, personal('1.7976931348623157e308'), appKey);
    expect(res.status).toBe(200);
    expect(JSON.stringify(decodePart(((await res.json()) as Pair).auth_token, 1).personal)).toBe('{"a":[1,{"n":1.7976931348623157e+308}]}');
  });
});

describe('app key (403)', () => {
  it('answers the same 403 for a missing, wrong, other app\'s key, unknown or disabled app', async () => {
    const h = await harness();
    const a = await h.createApp('a');
    const b = await h.createApp('b');
    const body = { sub: 's', ...client };
    const cases: Array<[string, string | undefined, string]> = [
      ['/app/a/issue', undefined, 'missing app key'],
      ['/app/a/issue', 'tmk_wrong', 'wrong app key'],
      ['/app/a/issue', b.appKey, 'wrong app key'],
      ['/app/nope/issue', a.appKey, 'unknown app'],
      ['/app/a/renew', 'Bearer ', 'wrong app key'],
    ];
    for (const [path, key, reason] of cases) {
      const res = await h.post(path, body, key);
      expect(res.status).toBe(403);
      expect(await res.json()).toEqual({ message: 'invalid app key' });
      expect(h.logs.at(-1)).toMatchObject({ status: 403, reason });
    }
    await h.tm.apps.setDisabled('a', true);
    const res = await h.post('/app/a/issue', body, a.appKey);
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ message: 'invalid app key' });
    await h.tm.apps.setDisabled('a', false);
    expect((await h.post('/app/a/issue', body, a.appKey)).status).toBe(200);
  });

  it('keeps the old key valid for the rotate-secret grace period only', async () => {
    const h = await harness();
    const { appId, appKey: oldKey } = await h.createApp();
    const newKey = await h.tm.apps.rotateSecret(appId, 60);
    const body = { sub: 's', ...client };
    expect((await h.post(`/app/${appId}/issue`, body, newKey)).status).toBe(200);
    expect((await h.post(`/app/${appId}/issue`, body, oldKey)).status).toBe(200);
    h.clock.advance(61);
    expect((await h.post(`/app/${appId}/issue`, body, oldKey)).status).toBe(403);
    expect((await h.post(`/app/${appId}/issue`, body, newKey)).status).toBe(200);
    // Grace 0: the old key stops at once.
    const newest = await h.tm.apps.rotateSecret(appId, 0);
    expect((await h.post(`/app/${appId}/issue`, body, newKey)).status).toBe(403);
    expect((await h.post(`/app/${appId}/issue`, body, newest)).status).toBe(200);
  });

  it('checks an app update against the app as it is when it is written: of two at once that clash, one is refused', async () => {
    const h = await harness();
    const { appId } = await h.createApp('acme', { refreshNbfSeconds: 30, accessTtlSeconds: 3600 });
    // Each is fine alone; together a refresh token would only renew after its auth token expired.
    const results = await Promise.allSettled([h.tm.apps.update(appId, { refreshNbfSeconds: 50 }), h.tm.apps.update(appId, { accessTtlSeconds: 40 })]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const app = await h.tm.apps.get(appId);
    expect(app.refreshNbfSeconds <= app.accessTtlSeconds).toBe(true);
    await expect(h.tm.apps.update('nope', { accessTtlSeconds: 40 })).rejects.toThrow(/no app "nope"/);
  });

  it('keeps one previous key: a second rotate-secret within the grace ends the first old key; two at once lose neither new key', async () => {
    const h = await harness();
    const { appId, appKey: first } = await h.createApp();
    const body = { sub: 's', ...client };
    const second = await h.tm.apps.rotateSecret(appId, 60);
    const third = await h.tm.apps.rotateSecret(appId, 60);
    expect(await Promise.all([first, second, third].map(async (key) => (await h.post(`/app/${appId}/issue`, body, key)).status))).toEqual([403, 200, 200]);
    // Two at once (two admins, two deploy scripts): the later one's old key is the earlier one's new key.
    // Until this version both read the app first, and the key the earlier one printed never worked.
    const racing = await Promise.all([h.tm.apps.rotateSecret(appId, 60), h.tm.apps.rotateSecret(appId, 60)]);
    expect(await Promise.all([third, ...racing].map(async (key) => (await h.post(`/app/${appId}/issue`, body, key)).status))).toEqual([403, 200, 200]);
  });
});

describe('POST /app/:app_id/renew', () => {
  it('rotates: a new pair in the same session, new jid, and the used token is refused later', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp('acme', { refreshNbfSeconds: 60, reuseGraceSeconds: 10 });
    const first = (await (await h.post(`/app/${appId}/issue`, { sub: 'u', ...client, personal: { p: 1 } }, appKey)).json()) as Pair;
    h.clock.advance(60);
    const res = await h.post(`/app/${appId}/renew`, { refresh_token: first.refresh_token, ip: '198.51.100.1', useragent: 'other-agent' }, appKey);
    expect(res.status).toBe(200);
    const second = (await res.json()) as Pair;
    const auth = verifyIndependently(second.auth_token, second.public_key).payload;
    const refresh = verifyIndependently(second.refresh_token, second.public_key).payload;
    expect(auth.jid).not.toBe(decodePart(first.auth_token, 1).jid);
    expect(refresh.jid).toBe(auth.jid);
    expect(auth).toMatchObject({ sub: 'u', ip: '198.51.100.1', useragent: 'other-agent', personal: { p: 1 }, iat: Math.floor(h.clock() / 1000) });
    h.clock.advance(11);
    expect((await h.post(`/app/${appId}/renew`, { refresh_token: first.refresh_token, ...client }, appKey)).status).toBe(401);
  });

  it('never lets a refresh token outlive the session: exp is capped, and renew stops at session end', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp('acme', { refreshNbfSeconds: 0, refreshTtlSeconds: 3600, sessionTtlSeconds: 5000 });
    const start = Math.floor(h.clock() / 1000);
    let pair = (await (await h.post(`/app/${appId}/issue`, { sub: 'u', ...client }, appKey)).json()) as Pair;
    h.clock.advance(3000);
    pair = (await (await h.post(`/app/${appId}/renew`, { refresh_token: pair.refresh_token, ...client }, appKey)).json()) as Pair;
    expect(decodePart(pair.refresh_token, 1).exp).toBe(start + 5000);
    h.clock.advance(2000);
    const res = await h.post(`/app/${appId}/renew`, { refresh_token: pair.refresh_token, ...client }, appKey);
    expect(res.status).toBe(401);
  });

  it('signs with the new current key after a rotation and still renews tokens of the retired key', async () => {
    const h = await harness();
    const { appId, appKey, kid } = await h.createApp('acme', { refreshNbfSeconds: 0 });
    const pair = (await (await h.post(`/app/${appId}/issue`, { sub: 'u', ...client }, appKey)).json()) as Pair;
    const current = await h.tm.keyring.rotate(appId);
    expect(current.kid).not.toBe(kid);
    const res = await h.post(`/app/${appId}/renew`, { refresh_token: pair.refresh_token, ...client }, appKey);
    expect(res.status).toBe(200);
    const renewed = (await res.json()) as Pair;
    expect(renewed.key_id).toBe(current.kid);
    expect(verifyIndependently(renewed.auth_token, renewed.public_key).header.kid).toBe(current.kid);
  });
});

describe('POST /app/:app_id/revoke', () => {
  it('ends the whole session, and answers 200 for unknown or dead tokens', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp('acme', { refreshNbfSeconds: 60 });
    const pair = (await (await h.post(`/app/${appId}/issue`, { sub: 'u', ...client }, appKey)).json()) as Pair;
    // Right after login (before nbf) a user can still log out.
    let res = await h.post(`/app/${appId}/revoke`, { refresh_token: pair.refresh_token }, appKey);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ message: 'revoked' });
    h.clock.advance(60);
    expect((await h.post(`/app/${appId}/renew`, { refresh_token: pair.refresh_token, ...client }, appKey)).status).toBe(401);
    expect(h.logs.at(-1)).toMatchObject({ status: 401, reason: 'session revoked (client)' });
    for (const token of [pair.refresh_token, 'garbage', pair.auth_token]) {
      res = await h.post(`/app/${appId}/revoke`, { refresh_token: token }, appKey);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ message: 'revoked' });
    }
    expect((await h.post(`/app/${appId}/revoke`, {}, appKey)).status).toBe(400);
    expect((await h.post(`/app/${appId}/revoke`, { refresh_token: pair.refresh_token }, 'wrong')).status).toBe(403);
  });
});

/** A new session of `sub` in `app`, through the HTTP API. */
const issueFor = async (h: Harness, app: { appId: string; appKey: string }, sub: string) => (await (await h.post(`/app/${app.appId}/issue`, { sub, ...client }, app.appKey)).json()) as Pair;

describe('POST /app/:app_id/revoke-subject', () => {
  it('ends every live session of that subject in that app, and no other; answers how many', async () => {
    const h = await harness();
    const acme = await h.createApp('acme', { refreshNbfSeconds: 0 });
    const beta = await h.createApp('beta', { refreshNbfSeconds: 0 });
    const issue = (app: { appId: string; appKey: string }, sub: string) => issueFor(h, app, sub);
    const renewStatus = async (app: { appId: string; appKey: string }, pair: Pair) => (await h.post(`/app/${app.appId}/renew`, { refresh_token: pair.refresh_token, ...client }, app.appKey)).status;
    const [phone, laptop, other, elsewhere] = [await issue(acme, 'u'), await issue(acme, 'u'), await issue(acme, 'v'), await issue(beta, 'u')];

    let res = await h.post('/app/acme/revoke-subject', { sub: 'u' }, acme.appKey);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ message: 'revoked', revoked: 2 });
    expect(await renewStatus(acme, phone)).toBe(401);
    expect(h.logs.at(-1)).toMatchObject({ status: 401, reason: 'session revoked (client)' });
    expect(await renewStatus(acme, laptop)).toBe(401);
    expect(await renewStatus(acme, other)).toBe(200);
    expect(await renewStatus(beta, elsewhere)).toBe(200);
    expect((await h.tm.audit.list({ appId: 'acme', limit: 1 }))[0]).toMatchObject({ event: 'session.revoked', actor: 'server', sub: 'u', detail: '{"all":false,"count":2}' });

    // Again: nothing left to end. A new login of the subject is a new session.
    res = await h.post('/app/acme/revoke-subject', { sub: 'u' }, acme.appKey);
    expect(await res.json()).toEqual({ message: 'revoked', revoked: 0 });
    expect(await renewStatus(acme, await issue(acme, 'u'))).toBe(200);
    expect((await h.post('/app/acme/revoke-subject', { sub: 'u' }, beta.appKey)).status).toBe(403);
    res = await h.post('/app/acme/revoke-subject', { sub: '' }, acme.appKey);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: Array<{ path: string }> }).errors.map((e) => e.path)).toEqual(['sub']);
  });
});

describe('POST /app/:app_id/revoke-subject with except_refresh_token ("log out everywhere else")', () => {
  it('ends every other live session of the subject and keeps the one of that token, used or not yet valid; a token not of that app and subject is 401 and ends nothing', async () => {
    const h = await harness();
    const acme = await h.createApp('acme', { refreshNbfSeconds: 60 });
    const beta = await h.createApp('beta', { refreshNbfSeconds: 0 });
    const issue = (app: { appId: string; appKey: string }, sub: string) => issueFor(h, app, sub);
    const renew = (pair: Pair) => h.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, acme.appKey);
    const revokeOthers = (sub: string, except: string) => h.post('/app/acme/revoke-subject', { sub, except_refresh_token: except }, acme.appKey);
    const [here, phone, tablet, other] = [await issue(acme, 'u'), await issue(acme, 'u'), await issue(acme, 'u'), await issue(acme, 'v')];

    // Refused, nothing ended: a token of another subject, of another app, forged, or not a token.
    const refused: Array<[string, string, string]> = [
      ['u', other.refresh_token, 'session of another subject'],
      ['u', (await issue(beta, 'u')).refresh_token, 'unknown kid'],
      ['u', `${here.refresh_token.slice(0, -4)}AAAA`, 'bad signature'],
      ['u', here.auth_token, 'not a refresh token'],
    ];
    for (const [sub, token, reason] of refused) {
      const res = await revokeOthers(sub, token);
      expect([res.status, await res.json()]).toEqual([401, { message: 'invalid refresh token' }]);
      expect(h.logs.at(-1)).toMatchObject({ status: 401, reason });
    }
    expect((await h.post('/app/acme/revoke-subject', { sub: 'u', except_refresh_token: 7 }, acme.appKey)).status).toBe(400);

    // A token right after login (before its nbf) names its session; so would one already renewed.
    let res = await revokeOthers('u', here.refresh_token);
    expect(await res.json()).toEqual({ message: 'revoked', revoked: 2 });
    expect((await h.tm.audit.list({ appId: 'acme', limit: 1 }))[0]).toMatchObject({ event: 'session.revoked', sub: 'u', detail: expect.stringContaining('"count":2,"kept_session_id":') });
    h.clock.advance(60);
    expect((await renew(phone)).status).toBe(401);
    expect((await renew(tablet)).status).toBe(401);
    expect((await renew(other)).status).toBe(200);
    const renewed = await renew(here);
    expect(renewed.status).toBe(200);
    res = await revokeOthers('u', here.refresh_token); // used now: it still names its session
    expect(await res.json()).toEqual({ message: 'revoked', revoked: 0 });
    h.clock.advance(60);
    expect((await renew((await renewed.json()) as Pair)).status).toBe(200);
  });
});

describe('POST /app/:app_id/sessions and /revoke-session ("your devices")', () => {
  it('lists a subject\'s live sessions, newest first, the caller\'s marked current; ends one of them by id, only with its subject', async () => {
    const h = await harness();
    const acme = await h.createApp('acme', { refreshNbfSeconds: 0, sessionTtlSeconds: 3600 });
    const beta = await h.createApp('beta', { refreshNbfSeconds: 0 });
    const login = async (app: { appId: string; appKey: string }, sub: string, useragent: string, ip = '203.0.113.7') => {
      const pair = (await (await h.post(`/app/${app.appId}/issue`, { sub, ip, useragent }, app.appKey)).json()) as Pair;
      h.clock.advance(1);
      return pair;
    };
    const list = async (body: object, appKey = acme.appKey) => {
      const res = await h.post('/app/acme/sessions', body, appKey);
      return { status: res.status, json: (await res.json()) as { sessions: Array<Record<string, unknown>> } };
    };
    await login(acme, 'u', 'Old phone');
    h.clock.advance(3600); // its absolute end passes
    const phoneAt = h.clock();
    const [phone, laptop, revoked] = [await login(acme, 'u', 'Phone', '198.51.100.1'), await login(acme, 'u', 'Laptop'), await login(acme, 'u', 'Kiosk')];
    await login(acme, 'v', 'Other user');
    await login(beta, 'u', 'Other app');
    await h.post('/app/acme/revoke', { refresh_token: revoked.refresh_token }, acme.appKey);

    const listed = await list({ sub: 'u', refresh_token: laptop.refresh_token });
    expect(listed.status).toBe(200);
    expect(listed.json.sessions.map((s) => [s.useragent, s.current])).toEqual([['Laptop', true], ['Phone', false]]);
    const [laptopSession, phoneSession] = listed.json.sessions;
    expect(phoneSession).toEqual({
      session_id: expect.stringMatching(/^[0-9A-Z]{26}$/),
      created_at: new Date(phoneAt).toISOString(),
      expires_at: new Date(phoneAt + 3600_000).toISOString(),
      ip: '198.51.100.1',
      useragent: 'Phone',
      current: false,
    });
    // No token, or one that is not genuine: nothing is current, and the list is the same.
    for (const body of [{ sub: 'u' }, { sub: 'u', refresh_token: 'garbage' }, { sub: 'u', refresh_token: laptop.auth_token }]) {
      expect((await list(body)).json.sessions.map((s) => [s.session_id, s.current])).toEqual([[laptopSession!.session_id, false], [phoneSession!.session_id, false]]);
    }
    expect((await list({ sub: 'nobody' })).json).toEqual({ sessions: [] });
    expect((await list({ sub: 'u' }, beta.appKey)).status).toBe(403);
    expect((await list({})).status).toBe(400);

    const revoke = async (body: object) => (await (await h.post('/app/acme/revoke-session', body, acme.appKey)).json()) as unknown;
    // Another subject's id ends nothing: a backend bug cannot log out someone else.
    expect(await revoke({ sub: 'v', session_id: phoneSession!.session_id })).toEqual({ message: 'revoked', revoked: 0 });
    expect(await revoke({ sub: 'u', session_id: phoneSession!.session_id })).toEqual({ message: 'revoked', revoked: 1 });
    expect((await h.post('/app/acme/renew', { refresh_token: phone.refresh_token, ...client }, acme.appKey)).status).toBe(401);
    expect(h.logs.at(-1)).toMatchObject({ status: 401, reason: 'session revoked (client)' });
    expect((await h.post('/app/acme/renew', { refresh_token: laptop.refresh_token, ...client }, acme.appKey)).status).toBe(200);
    expect((await h.tm.audit.list({ appId: 'acme', limit: 1 }))[0]).toMatchObject({ event: 'session.revoked', actor: 'server', sub: 'u', sessionId: phoneSession!.session_id });
    expect(await revoke({ sub: 'u', session_id: phoneSession!.session_id })).toEqual({ message: 'revoked', revoked: 0 });
    expect((await list({ sub: 'u' })).json.sessions.map((s) => s.useragent)).toEqual(['Laptop']);
    expect((await h.post('/app/acme/revoke-session', { sub: 'u' }, acme.appKey)).status).toBe(400);
  });

  it('lists the newest 100 live sessions, and the caller\'s own after them when it is older', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme');
    const pairs: Pair[] = [];
    for (let i = 0; i < 102; i++) {
      pairs.push((await (await h.post('/app/acme/issue', { sub: 'bot', ip: '203.0.113.7', useragent: `client ${i}` }, appKey)).json()) as Pair);
      h.clock.advance(1);
    }
    const list = async (body: object) => ((await (await h.post('/app/acme/sessions', body, appKey)).json()) as { sessions: Array<{ useragent: string; current: boolean }> }).sessions;
    const newest = Array.from({ length: 100 }, (_, i) => `client ${101 - i}`);
    expect((await list({ sub: 'bot' })).map((s) => s.useragent)).toEqual(newest);
    const mine = await list({ sub: 'bot', refresh_token: pairs[0]!.refresh_token });
    expect(mine.map((s) => s.useragent)).toEqual([...newest, 'client 0']);
    expect(mine.filter((s) => s.current).map((s) => s.useragent)).toEqual(['client 0']);
  });
});

describe('POST /app/:app_id/issue with an Idempotency-Key', () => {
  it('a repeat with the same key replaces the session of the first (its answer lost): one live session, the first refused as retried; not once that session was renewed', async () => {
    const h = await harness();
    const acme = await h.createApp('acme', { refreshNbfSeconds: 0 });
    const issue = async (sub: string, key?: string) => {
      const res = await h.post('/app/acme/issue', { sub, ...client }, acme.appKey, key === undefined ? {} : { 'idempotency-key': key });
      return { status: res.status, body: (await res.json()) as Pair & { errors?: Array<{ path: string }> } };
    };
    const live = async (sub: string) => ((await (await h.post('/app/acme/sessions', { sub }, acme.appKey)).json()) as { sessions: unknown[] }).sessions.length;
    const lost = await issue('u', '6c1f5e0e-7c38-4b7c-9d0c-1f2a3b4c5d6e');
    const retried = await issue('u', '6c1f5e0e-7c38-4b7c-9d0c-1f2a3b4c5d6e');
    expect([lost.status, retried.status]).toEqual([200, 200]);
    expect(await live('u')).toBe(1);
    expect((await h.post('/app/acme/renew', { refresh_token: lost.body.refresh_token, ...client }, acme.appKey)).status).toBe(401);
    expect(h.logs.at(-1)).toMatchObject({ status: 401, reason: 'session revoked (retried)' });
    expect((await h.post('/app/acme/renew', { refresh_token: retried.body.refresh_token, ...client }, acme.appKey)).status).toBe(200);
    // No key, or another one, or another subject: sessions of their own.
    await issue('u');
    await issue('u', 'another-call');
    await issue('v', '6c1f5e0e-7c38-4b7c-9d0c-1f2a3b4c5d6e');
    expect([await live('u'), await live('v')]).toEqual([3, 1]);
    // The key sent again after its session was renewed: that answer was not lost, so it is no retry, and
    // the renewed session lives on beside the new one (until this version it was revoked as retried).
    const held = await issue('x', 'sent-twice');
    const renewed = await h.post('/app/acme/renew', { refresh_token: held.body.refresh_token, ...client }, acme.appKey);
    expect(renewed.status).toBe(200);
    expect((await issue('x', 'sent-twice')).status).toBe(200);
    expect(await live('x')).toBe(2);
    expect((await h.post('/app/acme/renew', { refresh_token: ((await renewed.json()) as Pair).refresh_token, ...client }, acme.appKey)).status).toBe(200);
    // A key that cannot be one, or an app key pasted there (it would be stored): 400, nothing issued.
    for (const key of ['', 'two words', 'x'.repeat(129), acme.appKey]) {
      const refused = await issue('w', key);
      expect([refused.status, refused.body.errors?.map((e) => e.path)]).toEqual([400, ['Idempotency-Key']]);
    }
    expect(await live('w')).toBe(0);
  });
});

describe('an app with max-sessions', () => {
  it("ends a subject's oldest live sessions beyond it as a new one starts (session-limit); other subjects and ended sessions do not count; 0 is no limit", async () => {
    const h = await harness();
    const acme = await h.createApp('acme', { refreshNbfSeconds: 0, maxSessions: 2 });
    const issue = async (sub: string) => {
      h.clock.advance(1);
      return (await (await h.post('/app/acme/issue', { sub, ...client }, acme.appKey)).json()) as Pair;
    };
    const renew = async (pair: Pair) => (await h.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, acme.appKey)).status;
    const live = async (sub: string) => ((await (await h.post('/app/acme/sessions', { sub }, acme.appKey)).json()) as { sessions: unknown[] }).sessions.length;
    const logout = await issue('u');
    expect((await h.post('/app/acme/revoke', { refresh_token: logout.refresh_token }, acme.appKey)).status).toBe(200);
    const [first, second, other] = [await issue('u'), await issue('u'), await issue('v')];
    const third = await issue('u');
    expect(await renew(first)).toBe(401);
    expect(h.logs.at(-1)).toMatchObject({ status: 401, reason: 'session revoked (session-limit)' });
    expect([await renew(second), await renew(third), await renew(other)]).toEqual([200, 200, 200]);
    expect([await live('u'), await live('v')]).toEqual([2, 1]);
    await h.tm.apps.update('acme', { maxSessions: 0 });
    await issue('u');
    expect(await live('u')).toBe(3);
  });
});

describe('POST /app/:app_id/update-personal', () => {
  it('sets the personal claims of every live session of the subject, in the auth tokens of their next renews; null removes them; nothing else changes', async () => {
    const h = await harness();
    const acme = await h.createApp('acme', { refreshNbfSeconds: 0 });
    const beta = await h.createApp('beta', { refreshNbfSeconds: 0 });
    const issueWith = async (app: { appId: string; appKey: string }, sub: string) =>
      (await (await h.post(`/app/${app.appId}/issue`, { sub, ...client, personal: { name: 'Ann' } }, app.appKey)).json()) as Pair;
    const renewed = async (app: { appId: string; appKey: string }, pair: Pair) => {
      const res = await h.post(`/app/${app.appId}/renew`, { refresh_token: pair.refresh_token, ...client }, app.appKey);
      expect(res.status).toBe(200);
      return (await res.json()) as Pair;
    };
    const personalOf = (pair: Pair) => verifyIndependently(pair.auth_token, pair.public_key).payload.personal;
    const [phone, laptop, ended, other, elsewhere] = [await issueWith(acme, 'u'), await issueWith(acme, 'u'), await issueWith(acme, 'u'), await issueWith(acme, 'v'), await issueWith(beta, 'u')];
    await h.post('/app/acme/revoke', { refresh_token: ended.refresh_token }, acme.appKey);

    const update = (body: unknown) => h.post('/app/acme/update-personal', body, acme.appKey);
    let res = await update('{"sub":"u","personal":{"name":"Annie","__proto__":{"admin":true}}}'); // kept as plain data, as at issue
    expect(await res.json()).toEqual({ message: 'updated', updated: 2 }); // not the ended one
    const phone2 = await renewed(acme, phone);
    expect(personalOf(phone2)).toEqual(JSON.parse('{"name":"Annie","__proto__":{"admin":true}}'));
    expect(personalOf(await renewed(acme, laptop))).toMatchObject({ name: 'Annie' });
    expect(personalOf(await renewed(acme, other))).toEqual({ name: 'Ann' });
    expect(personalOf(await renewed(beta, elsewhere))).toEqual({ name: 'Ann' });
    expect(personalOf(phone)).toEqual({ name: 'Ann' }); // what was issued stays as signed

    res = await update({ sub: 'u', personal: null });
    expect(await res.json()).toEqual({ message: 'updated', updated: 2 });
    expect(verifyIndependently((await renewed(acme, phone2)).auth_token, phone2.public_key).payload).not.toHaveProperty('personal');

    for (const [body, path] of [[{ sub: 'u' }, 'personal'], [{ sub: 'u', personal: [1] }, 'personal'], [{ sub: 'u', personal: { blob: 'x'.repeat(4100) } }, 'personal'], [{ personal: null }, 'sub']] as const) {
      res = await update(body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { errors: Array<{ path: string }> }).errors.map((e) => e.path)).toEqual([path]);
    }
    expect((await h.post('/app/acme/update-personal', { sub: 'u', personal: null }, beta.appKey)).status).toBe(403);
    expect(await (await update({ sub: 'nobody', personal: null })).json()).toEqual({ message: 'updated', updated: 0 });
  });
});

describe('answers that carry tokens', () => {
  it('say Cache-Control: no-store on every app-key route, errors included (RFC 6749 §5.1)', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp('acme', { refreshNbfSeconds: 0 });
    const issued = await h.post(`/app/${appId}/issue`, { sub: 'u', ...client }, appKey);
    const pair = (await issued.clone().json()) as Pair;
    const answers = [
      issued,
      await h.post(`/app/${appId}/renew`, { refresh_token: pair.refresh_token, ...client }, appKey),
      await h.post(`/app/${appId}/revoke`, { refresh_token: pair.refresh_token }, appKey),
      await h.post(`/app/${appId}/revoke-subject`, { sub: 'u' }, appKey),
      await h.post(`/app/${appId}/sessions`, { sub: 'u' }, appKey),
      await h.post(`/app/${appId}/revoke-session`, { sub: 'u', session_id: 'x' }, appKey),
      await h.post(`/app/${appId}/update-personal`, { sub: 'u', personal: null }, appKey),
      await h.post(`/app/${appId}/renew`, { refresh_token: pair.refresh_token, ...client }, appKey), // 401
      await h.post(`/app/${appId}/issue`, { sub: '' }, appKey), // 400
      await h.post(`/app/${appId}/issue`, { sub: 'u', ...client }, 'tmk_wrong'), // 403
    ];
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200, 200, 401, 400, 403]);
    for (const res of answers) expect(res.headers.get('cache-control')).toBe('no-store');
    // Not the JWKS, which caches may keep; and every route keeps its own name in logs and metrics.
    expect((await h.app.request(`/app/${appId}/jwks.json`)).headers.get('cache-control')).toMatch(/^public, max-age=/);
    expect(h.logs.map((l) => l.route).filter(Boolean)).toEqual([
      ...['issue', 'renew', 'revoke', 'revoke-subject', 'sessions', 'revoke-session', 'update-personal', 'renew', 'issue', 'issue'].map((r) => `/app/:app_id/${r}`),
      '/app/:app_id/jwks.json',
    ]);
  });
});

describe('every answer', () => {
  it('says nosniff, a CSP that frames and loads nothing, and its X-Request-Id, errors and a 304 included; no HSTS over plain HTTP', async () => {
    const h = await harness();
    const { appId, appKey } = await h.createApp('acme');
    const pair = (await (await h.post(`/app/${appId}/issue`, { sub: 'u', ...client }, appKey)).json()) as Pair;
    const answers = [
      await h.post(`/app/${appId}/renew`, { refresh_token: pair.refresh_token, ...client }, appKey), // 401: before its nbf
      await h.post(`/app/${appId}/issue`, { sub: 'u', ...client }, appKey),
      await h.post(`/app/${appId}/issue`, { sub: '' }, appKey),
      await h.post(`/app/${appId}/issue`, { sub: 'u', ...client }, 'tmk_wrong'),
      await h.app.request(`/app/${appId}/issue`, { method: 'POST', headers: { authorization: appKey, 'content-length': String(70_000) }, body: 'x'.repeat(70_000) }),
      await h.app.request(`/app/${appId}/jwks.json`),
      await h.app.request(`/app/${appId}/jwks.json`, { headers: { 'if-none-match': '*' } }),
      await h.app.request('/app/nobody/jwks.json'),
      await h.app.request('/healthz'),
      await h.app.request('/readyz'),
      await h.app.request('/openapi.json'),
      await h.app.request('/metrics'),
      await h.app.request('/no-such-route'),
    ];
    expect(answers.map((r) => r.status)).toEqual([401, 200, 400, 403, 413, 200, 304, 404, 200, 200, 200, 200, 404]);
    for (const res of answers) {
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
      expect(res.headers.get('strict-transport-security')).toBeNull();
      expect(res.headers.get('x-request-id')).toMatch(/^[\w-]{1,128}$/);
    }
    // A 304 of the JWKS keeps its CORS header too.
    expect(answers[6]!.headers.get('access-control-allow-origin')).toBe('*');
  });
});

describe('a method a path does not have', () => {
  it('gets 405 with Allow naming the methods it has, before any app key is checked; an unknown path stays 404', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme', { refreshNbfSeconds: 0 });
    const asked = async (method: string, path: string) => {
      const res = await h.app.request(path, { method, headers: { authorization: appKey } });
      return [res.status, res.headers.get('allow'), res.status === 405 ? await res.json() : undefined];
    };
    const refused = { message: 'method not allowed' };
    expect(await asked('GET', '/app/acme/renew')).toEqual([405, 'POST', refused]);
    expect(await asked('PUT', '/app/nobody/issue')).toEqual([405, 'POST', refused]);
    expect(await asked('POST', '/app/acme/jwks.json')).toEqual([405, 'GET, HEAD, OPTIONS', refused]);
    expect(await asked('DELETE', '/healthz')).toEqual([405, 'GET, HEAD', refused]);
    expect(await asked('HEAD', '/healthz')).toEqual([200, null, undefined]);
    expect(await asked('GET', '/app/acme/no-such-route')).toEqual([404, null, undefined]);
    expect(await asked('GET', '/nope')).toEqual([404, null, undefined]);
    // Each under its own route in the log; the routes themselves answer as before.
    expect(h.logs.filter((l) => l.status === 405).map((l) => l.route)).toEqual(['/app/:app_id/renew', '/app/:app_id/issue', '/app/:app_id/jwks.json', '/healthz']);
    expect((await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey)).status).toBe(200);
    expect(h.logs.at(-1)).toMatchObject({ route: '/app/:app_id/issue', status: 200 });
  });
});

describe('public routes', () => {
  it('GET /healthz', async () => {
    const h = await harness();
    const res = await h.app.request('/healthz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('GET /readyz: 200 while the database answers, 503 "not ready" when it does not (while /healthz still answers 200)', async () => {
    const h = await harness();
    let res = await h.app.request('/readyz');
    expect([res.status, await res.json()]).toEqual([200, { status: 'ok' }]);
    await h.tm.close();
    res = await h.app.request('/readyz');
    expect([res.status, await res.json()]).toEqual([503, { message: 'not ready' }]);
    expect((await h.app.request('/healthz')).status).toBe(200);
    expect(h.logs).toContainEqual(expect.objectContaining({ msg: 'not ready', error: expect.objectContaining({ message: 'The database connection is not open' }) }));
    expect(h.logs).toContainEqual(expect.objectContaining({ route: '/readyz', status: 503, reason: 'database unreadable' }));
  });

  it('GET /app/:app_id/jwks.json publishes current and next with public fields only; 404 for an unknown app', async () => {
    const h = await harness();
    const { appId, kid } = await h.createApp();
    const res = await h.app.request(`/app/${appId}/jwks.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toMatch(/^public, max-age=\d+$/);
    const { keys } = (await res.json()) as { keys: Array<Record<string, string>> };
    expect(keys).toHaveLength(2);
    expect(keys.map((k) => k.kid)).toContain(kid);
    for (const k of keys) {
      expect(Object.keys(k).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
      expect(k).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    }
    const missing = await h.app.request('/app/nope/jwks.json');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toHaveProperty('message');
  });

  it('keeps the JWKS public for a disabled app', async () => {
    const h = await harness();
    const { appId } = await h.createApp();
    await h.tm.apps.setDisabled(appId, true);
    expect((await h.app.request(`/app/${appId}/jwks.json`)).status).toBe(200);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const h = await harness();
    const res = await h.app.request('/nope');
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ message: 'not found' });
  });
});
