import { isUtf8 } from 'node:buffer';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import { client, decodePart, harness, type Harness, type Pair } from '../helpers.js';
import { fuzzParams as params, hostileToken } from '../hostile-tokens.js';

const CONTRACT_STATUSES = new Set([200, 204, 304, 400, 401, 403, 404, 405, 413, 429]);
/** Every route of an app: the contract's, and those beyond it. */
const APP_ROUTES = ['issue', 'renew', 'revoke', 'revoke-subject', 'sessions', 'revoke-session', 'update-personal', 'jwks.json'];

let h: Harness;
let appKey: string;
/** Every refresh token the server answered 200 with: the only ones renew may accept. */
let issued: Set<string>;
let sample: Pair;

// A fresh app per test (the harness is cleaned up after each one).
beforeEach(async () => {
  h = await harness({ env: { APP_KEY_FAILURE_LIMIT: '1000000' } });
  issued = new Set();
  ({ appKey } = await h.createApp('acme', { refreshNbfSeconds: 0 }));
  await h.createApp('other');
  sample = (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey)).json()) as Pair;
  issued.add(sample.refresh_token);
});

/** The contract's shape for an answer, and the no-forged-200 rule. */
async function checkAnswer(res: Response, method: string, presentedToken?: unknown) {
  expect(CONTRACT_STATUSES, `status ${res.status}`).toContain(res.status);
  const text = await res.text();
  if (res.status === 204 || res.status === 304 || method === 'HEAD') return;
  if (res.status === 200 && !res.headers.get('content-type')?.startsWith('application/json')) return; // /metrics
  const body = JSON.parse(text) as Record<string, unknown>;
  if (res.status >= 400) {
    expect(typeof body.message).toBe('string');
    if (res.status === 400) expect(body.errors).toEqual(expect.arrayContaining([expect.objectContaining({ path: expect.any(String), message: expect.any(String) })]));
  }
  if (res.status === 200 && typeof body.refresh_token === 'string') {
    if (presentedToken !== undefined) expect(issued.has(String(presentedToken)), 'renew accepted a token that was never issued').toBe(true);
    issued.add(body.refresh_token);
  }
}

describe('hostile input never breaks the contract (fast-check)', () => {
  it('arbitrary methods, paths, headers and bodies: never a 500, always a contract body', async () => {
    const path = fc.oneof(
      fc.constantFrom(...APP_ROUTES.map((r) => `/app/acme/${r}`), '/healthz', '/readyz', '/metrics', '/app/other/renew'),
      fc.tuple(fc.string({ unit: 'grapheme', maxLength: 80 }), fc.constantFrom(...APP_ROUTES, '')).map(([id, r]) => `/app/${encodeURIComponent(id)}/${r}`),
      fc.webPath(),
      fc.constantFrom('/app/%2e%2e/renew', '/app/acme/../acme/renew', '/app//renew', '/app/acme/renew?x=%ff', '/%', '/app/%00/issue'),
    );
    const body = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.jsonValue({ maxDepth: 40 }).map((v) => JSON.stringify(v)),
      fc.record({ sub: fc.oneof(fc.string(), fc.jsonValue()), ip: fc.oneof(fc.ipV4(), fc.ipV6(), fc.string()), useragent: fc.string(), personal: fc.jsonValue() }).map((v) => JSON.stringify(v)),
      fc.record(
        { sub: fc.oneof(fc.constant('u'), fc.string(), fc.jsonValue()), session_id: fc.oneof(fc.string(), fc.jsonValue()), refresh_token: fc.oneof(fc.constant(sample.refresh_token), fc.string()), except_refresh_token: fc.oneof(fc.string(), fc.jsonValue()), personal: fc.jsonValue() },
        { requiredKeys: [] },
      ).map((v) => JSON.stringify(v)),
      fc.constantFrom('{"__proto__":{"admin":true},"sub":"x"}', '{"sub":"a","sub":"b","ip":"1.2.3.4","useragent":"u"}', '[]', 'null', '1e99999', '"\\ud800"'),
      // Nested past what a recursive walk survives, within the 64 KiB limit (a 500 until this version).
      fc.tuple(fc.integer({ min: 1, max: 30_000 }), fc.constantFrom('[', '{"a":')).map(([depth, open]) => `{"sub":"u","ip":"${client.ip}","useragent":"u","personal":${open.repeat(depth)}1${(open === '[' ? ']' : '}').repeat(depth)}}`),
      // Bytes, and an issue whose subject holds bytes that may not be UTF-8 (read as U+FFFD until this version).
      fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
      fc.uint8Array({ minLength: 1, maxLength: 8 }).map((bytes) => Buffer.concat([Buffer.from('{"sub":"u'), Buffer.from(bytes), Buffer.from(`","ip":"${client.ip}","useragent":"u"}`)])),
    );
    const authorization = fc.oneof(fc.constant(appKey), fc.constant(`Bearer ${appKey}`), fc.string({ maxLength: 100 }), fc.constant(undefined));
    const contentType = fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', undefined);
    const idempotencyKey = fc.oneof(fc.constant(undefined), fc.uuid(), fc.string({ maxLength: 200 }), fc.constant(appKey));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'), path, body, authorization, contentType, idempotencyKey, async (method, p, b, auth, type, key) => {
        const headers: Record<string, string> = {};
        if (auth !== undefined) headers.authorization = auth.replace(/[\r\n\0]/g, '');
        if (type) headers['content-type'] = type;
        if (key !== undefined) headers['idempotency-key'] = key.replace(/[\r\n\0]/g, '');
        const sent = method === 'GET' || method === 'HEAD' ? undefined : b;
        const res = await h.app.request(p, { method, headers, body: sent });
        await checkAnswer(res, method);
        if (Buffer.isBuffer(sent) && !isUtf8(sent)) expect(res.status).not.toBe(200); // JSON is UTF-8: such a body starts no session
      }),
      params,
    );
  });

  it('hostile refresh tokens: renew and revoke never answer 500, and renew never accepts one that was not issued', async () => {
    await fc.assert(
      fc.asyncProperty(hostileToken(sample.refresh_token), fc.constantFrom('renew', 'revoke'), async (token, route) => {
        const res = await h.post(`/app/acme/${route}`, { refresh_token: token, ...client }, appKey);
        await checkAnswer(res, 'POST', route === 'renew' ? token : undefined);
      }),
      params,
    );
  });

  it('hostile tokens to keep ("log out everywhere else"): never a 500, and one that was not issued ends no session', async () => {
    await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey); // a second session, which a forged token to keep must not end
    const live = async () => (await (await h.post('/app/acme/sessions', { sub: 'u' }, appKey)).json()) as { sessions: unknown[] };
    const before = (await live()).sessions.length;
    expect(before).toBe(2);
    await fc.assert(
      fc.asyncProperty(hostileToken(sample.refresh_token), async (token) => {
        const res = await h.post('/app/acme/revoke-subject', { sub: 'u', except_refresh_token: token }, appKey);
        if (res.status === 200) expect(issued.has(token), 'a token never issued named the session to keep').toBe(true);
        await checkAnswer(res, 'POST');
        expect((await live()).sessions).toHaveLength(before);
      }),
      params,
    );
  });

  it("ip: accepted exactly when node:net's isIP takes it (zone at most 64 characters), and copied as sent into the auth token", async () => {
    const zone = fc.stringMatching(/^[0-9a-zA-Z.:-]{1,70}$/);
    const address = fc.oneof(
      fc.ipV4(),
      fc.ipV6(),
      fc.ipV4Extended(), // octal, hex and short forms: not an address for isIP
      fc.tuple(fc.ipV6(), zone).map(([a, z]) => `${a}%${z}`),
      fc.tuple(fc.ipV4(), zone).map(([a, z]) => `${a}%${z}`),
      fc.ipV4().map((a) => `::ffff:${a}`),
      fc.tuple(fc.ipV6(), fc.string({ maxLength: 3 })).map(([a, x]) => a + x),
      fc.string({ maxLength: 50 }),
    );
    await fc.assert(
      fc.asyncProperty(address, async (ip) => {
        const res = await h.post('/app/acme/issue', { sub: 'u', ...client, ip }, appKey);
        const zoneLength = ip.includes('%') ? ip.length - ip.indexOf('%') - 1 : 0;
        expect(res.status, ip).toBe(isIP(ip) !== 0 && zoneLength <= 64 ? 200 : 400);
        if (res.status === 200) expect(decodePart(((await res.json()) as Pair).auth_token, 1).ip).toBe(ip);
        else expect(await res.json()).toEqual({ message: 'invalid request', errors: [{ path: 'ip', message: 'must be an IPv4 or IPv6 address' }] });
      }),
      params,
    );
  });

  it('hostile issue bodies: unicode, huge numbers, deep nesting, prototype keys in personal; a 200 signs the personal sent', async () => {
    // Numbers as text, as a backend in another language may write them: past a double (1e400), past 2^53, -0.
    const numberText = fc.constantFrom('1e400', '-1e400', '1e308', '1e-400', '12345678901234567890', '-0', '0.1', '1E2');
    const personal = fc.oneof(
      fc.object({ maxDepth: 6 }).map((p) => JSON.stringify(p)),
      fc.jsonValue({ maxDepth: 60 }).map((p) => JSON.stringify(p)),
      fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString'), fc.jsonValue()).map((p) => JSON.stringify(p)),
      fc.array(numberText, { minLength: 1, maxLength: 3 }).map((ns) => `{"n":${ns[0]},"all":[${ns.join(',')}]}`),
    );
    // What JSON.parse makes of the body, -0 as 0 (JSON.stringify writes it 0): the value a token must carry.
    const sent = (body: string) => (JSON.parse(body, (_key, v: unknown) => (Object.is(v, -0) ? 0 : v)) as { personal: unknown }).personal;
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'grapheme', minLength: 0, maxLength: 300 }), personal, async (sub, p) => {
        const body = `{"sub":${JSON.stringify(sub)},"ip":"${client.ip}","useragent":"${client.useragent}","personal":${p}}`;
        const res = await h.post('/app/acme/issue', body, appKey);
        if (res.status === 200) expect(decodePart(((await res.clone().json()) as Pair).auth_token, 1).personal).toEqual(sent(body));
        await checkAnswer(res, 'POST');
        expect(({} as Record<string, unknown>).admin).toBeUndefined();
      }),
      params,
    );
  });
});
