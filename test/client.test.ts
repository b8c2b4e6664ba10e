import http from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { createClient, InvalidRefreshTokenError, TokenmintClientError } from '../src/client.js';
import { client as user, decodePart, onCleanup, tempDir, testEnv, verifyIndependently } from './helpers.js';
import { cliProcess, startServer } from './processes.js';

async function setup(extraEnv: Record<string, string> = {}, reuseGraceSeconds = 10) {
  const dir = tempDir();
  const env = testEnv(dir, extraEnv);
  const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--refresh-nbf', '0', '--reuse-grace', String(reuseGraceSeconds));
  const server = await startServer(env, dir);
  return { server, appKey: String(appKey), databasePath: path.resolve(dir, env.DATABASE_URL!) };
}

type Action = 'forward' | 'fail-503' | 'drop' | 'forward-then-drop' | 'forward-then-hang' | 'forward-then-garble';

/**
 * A proxy in front of the real server that misbehaves on cue: each request takes the next action
 * (then 'forward'), and every request is counted.
 */
async function flakyProxy(target: string, actions: Action[]) {
  const seen: string[] = [];
  const requestIds: string[] = [];
  const proxy = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d)).on('end', async () => {
      seen.push(req.url!);
      requestIds.push(String(req.headers['x-request-id']));
      const action = actions.shift() ?? 'forward';
      if (action === 'fail-503') return void res.writeHead(503).end('{"message":"internal error"}');
      if (action === 'drop') return void req.socket.destroy();
      const forwarded = Object.fromEntries(['authorization', 'x-request-id', 'idempotency-key'].flatMap((name) => (req.headers[name] === undefined ? [] : [[name, String(req.headers[name])]])));
      const answer = await fetch(target + req.url, { method: req.method, headers: forwarded, body });
      const text = await answer.text();
      if (action === 'forward-then-drop') return void req.socket.destroy(); // tokenmint committed; the answer is lost
      if (action === 'forward-then-hang') return; // committed, and the answer never comes: the client times out
      if (action === 'forward-then-garble') return void res.writeHead(200, { 'content-type': 'text/html' }).end('<html>gateway</html>'); // a 200 not from tokenmint
      res.writeHead(answer.status, { 'content-type': 'application/json', ...(answer.headers.get('retry-after') ? { 'retry-after': answer.headers.get('retry-after')! } : {}) }).end(text);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise((resolve) => proxy.close(resolve)));
  return { url: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`, seen, requestIds };
}

describe('createClient', () => {
  it('throws a TypeError for misuse at once, not a failure on every call: a relative baseUrl, an empty key, a timeout no timer holds', () => {
    const ok = { baseUrl: 'http://127.0.0.1:8080', appId: 'acme', appKey: 'tmk_x' };
    const misuse: Array<[Record<string, unknown>, string]> = [
      [{ baseUrl: '127.0.0.1:8080/' }, 'baseUrl must be an absolute URL such as http://127.0.0.1:8080, not "127.0.0.1:8080/"'],
      [{ appKey: '' }, 'appKey must be a non-empty string'],
      [{ appId: undefined }, 'appId must be a non-empty string'],
      // Sent as is, it would get 403 "invalid app key" (as an unknown app does), and the key the blame.
      [{ appId: 'Acme' }, 'appId must be 1–63 characters of a-z 0-9 _ -, starting with a letter or digit, not "Acme"'],
      [{ appId: 'acme/renew' }, 'appId must be 1–63 characters of a-z 0-9 _ -, starting with a letter or digit, not "acme/renew"'],
      // Node's timers take at most 2^31 - 1 ms; more aborts every attempt after 1 ms.
      [{ timeoutMs: 2 ** 31 }, 'timeoutMs must be a whole number from 1 to 2147483647, not 2147483648'],
      [{ timeoutMs: 0 }, 'timeoutMs must be a whole number from 1 to 2147483647, not 0'],
      [{ retries: -1 }, 'retries must be a whole number from 0 to 100, not -1'],
      [{ retryDelayMs: Number.NaN }, 'retryDelayMs must be a whole number from 0 to 2147483647, not NaN'],
      [{ renewRetryWindowMs: Infinity }, 'renewRetryWindowMs must be a whole number from 0 to 2147483647, not Infinity'],
    ];
    for (const [change, message] of misuse) expect(() => createClient({ ...ok, ...change } as never)).toThrow(new TypeError(message));
    expect(() => createClient({ ...ok, retries: 0, retryDelayMs: 0, timeoutMs: 2 ** 31 - 1, renewRetryWindowMs: 0 })).not.toThrow();
  });
});

describe('tokenmint/client against a real server', () => {
  it('issues, renews and revokes; the pair verifies independently', async () => {
    const { server, appKey } = await setup();
    const tm = createClient({ baseUrl: server.url, appId: 'acme', appKey });
    const first = await tm.issue({ sub: 'user-1', ...user, personal: { plan: 'pro' } });
    expect(verifyIndependently(first.auth_token, first.public_key).payload).toMatchObject({ sub: 'user-1', personal: { plan: 'pro' } });
    const second = await tm.renew({ refresh_token: first.refresh_token, ...user });
    expect(decodePart(second.refresh_token, 1).jid).not.toBe(decodePart(first.refresh_token, 1).jid);
    await tm.revoke(second.refresh_token);
    const refused = await tm.renew({ refresh_token: second.refresh_token, ...user }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(InvalidRefreshTokenError);
    // Its request id finds the server's line, and the reason the answer does not give.
    const requestId = (refused as InvalidRefreshTokenError).details.requestId;
    const line = server.stdout().split('\n').find((l) => l.includes(`"request_id":"${requestId}"`));
    expect(JSON.parse(line!)).toMatchObject({ route: '/app/:app_id/renew', status: 401, reason: 'session revoked (client)' });
    // "Your devices": the subject's live sessions, this one marked; one of them ended by id.
    const [tablet, desktop] = [await tm.issue({ sub: 'user-2', ...user, useragent: 'Tablet' }), await tm.issue({ sub: 'user-2', ...user, useragent: 'Desktop' })];
    const devices = await tm.sessions('user-2', { refreshToken: desktop.refresh_token });
    expect(devices.map((d) => [d.useragent, d.current])).toEqual([['Desktop', true], ['Tablet', false]]);
    expect(await tm.revokeSession('user-2', devices[1]!.session_id)).toBe(1);
    await expect(tm.renew({ refresh_token: tablet.refresh_token, ...user })).rejects.toBeInstanceOf(InvalidRefreshTokenError);
    expect((await tm.sessions('user-2')).map((d) => [d.useragent, d.current])).toEqual([['Desktop', false]]);
    // Renamed: the live session's next auth token says so.
    expect(await tm.updatePersonal('user-2', { name: 'Grace' })).toBe(1);
    const renamed = await tm.renew({ refresh_token: desktop.refresh_token, ...user });
    expect(verifyIndependently(renamed.auth_token, renamed.public_key).payload.personal).toEqual({ name: 'Grace' });
    // Log out everywhere else: all but the session of the given token, which must be the subject's.
    const [watch, car] = [await tm.issue({ sub: 'user-1', ...user }), await tm.issue({ sub: 'user-1', ...user })];
    await expect(tm.revokeSubject('user-1', { exceptRefreshToken: desktop.refresh_token })).rejects.toBeInstanceOf(InvalidRefreshTokenError);
    expect(await tm.revokeSubject('user-1', { exceptRefreshToken: car.refresh_token })).toBe(1);
    await expect(tm.renew({ refresh_token: watch.refresh_token, ...user })).rejects.toBeInstanceOf(InvalidRefreshTokenError);
    // Log out everywhere: every live session of the subject.
    const [phone, laptop] = [await tm.issue({ sub: 'user-1', ...user }), await tm.issue({ sub: 'user-1', ...user })];
    expect(await tm.revokeSubject('user-1')).toBe(3);
    for (const pair of [phone, laptop, car]) await expect(tm.renew({ refresh_token: pair.refresh_token, ...user })).rejects.toBeInstanceOf(InvalidRefreshTokenError);
  });

  it('throws typed errors: invalid app key, invalid request with field errors, rate limited with Retry-After', async () => {
    const { server, appKey } = await setup({ APP_KEY_FAILURE_LIMIT: '2' });
    const good = createClient({ baseUrl: server.url, appId: 'acme', appKey });
    await expect(good.issue({ sub: '', ...user })).rejects.toMatchObject({ kind: 'invalid_request', details: { status: 400, errors: [{ path: 'sub' }] } });

    const wrong = createClient({ baseUrl: server.url, appId: 'acme', appKey: 'tmk_wrong' });
    await expect(wrong.issue({ sub: 'u', ...user })).rejects.toMatchObject({ kind: 'invalid_app_key', details: { status: 403 } });
    await expect(wrong.issue({ sub: 'u', ...user })).rejects.toMatchObject({ kind: 'invalid_app_key' });
    const limited = await wrong.issue({ sub: 'u', ...user }).catch((e: unknown) => e);
    expect(limited).toBeInstanceOf(TokenmintClientError);
    expect(limited).toMatchObject({ kind: 'rate_limited', details: { status: 429 } });
    expect((limited as TokenmintClientError).details.retryAfterSeconds).toBeGreaterThan(0);
  });

  it('single-flight: concurrent renews of one token share one request and one answer', async () => {
    const { server, appKey } = await setup();
    const proxy = await flakyProxy(server.url, []);
    const tm = createClient({ baseUrl: proxy.url, appId: 'acme', appKey });
    const pair = await tm.issue({ sub: 'u', ...user });
    const answers = await Promise.all(Array.from({ length: 10 }, () => tm.renew({ refresh_token: pair.refresh_token, ...user })));
    expect(new Set(answers.map((a) => a.refresh_token)).size).toBe(1);
    expect(proxy.seen.filter((u) => u.endsWith('/renew'))).toHaveLength(1);
    // Once settled, the same token is a new request (here answered from the reuse grace).
    await tm.renew({ refresh_token: pair.refresh_token, ...user });
    expect(proxy.seen.filter((u) => u.endsWith('/renew'))).toHaveLength(2);
  });

  it('retries a 5xx and a dropped connection; a renew whose answer was lost is retried into the same child, no reuse', async () => {
    const { server, appKey } = await setup();
    const actions: Action[] = [];
    const proxy = await flakyProxy(server.url, actions);
    const tm = createClient({ baseUrl: proxy.url, appId: 'acme', appKey, retryDelayMs: 10 });

    actions.push('fail-503', 'drop');
    const pair = await tm.issue({ sub: 'u', ...user });
    expect(proxy.seen).toHaveLength(3);

    actions.push('forward-then-drop');
    const renewed = await tm.renew({ refresh_token: pair.refresh_token, ...user });
    expect(proxy.seen.slice(3)).toEqual(['/app/acme/renew', '/app/acme/renew']);
    // One request id for a call, on each attempt, and in the server's line for each: the lost answer's
    // renew and its retry, answered from the reuse grace, can be told apart from two renews.
    const [first, retry] = proxy.requestIds.slice(3);
    expect(first).toMatch(/^[0-9a-f-]{36}$/);
    expect(retry).toBe(first);
    const lines = server.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.request_id === first).map((l) => [l.route, l.status])).toEqual([['/app/:app_id/renew', 200], ['/app/:app_id/renew', 200]]);
    expect(new Set(proxy.requestIds.slice(0, 3)).size).toBe(1); // the issue's three attempts: one id, not the renew's
    // The session is alive and did not fork: the renewed token renews again.
    const again = await tm.renew({ refresh_token: renewed.refresh_token, ...user });
    expect(decodePart(again.refresh_token, 1).jid).not.toBe(decodePart(renewed.refresh_token, 1).jid);
  });

  it('an issue whose answer was lost is retried with its Idempotency-Key: the retry replaces the session the first attempt started', async () => {
    const { server, appKey, databasePath } = await setup();
    const actions: Action[] = ['forward-then-drop'];
    const proxy = await flakyProxy(server.url, actions);
    const tm = createClient({ baseUrl: proxy.url, appId: 'acme', appKey, retryDelayMs: 10 });
    const pair = await tm.issue({ sub: 'u', ...user });
    expect(proxy.seen).toEqual(['/app/acme/issue', '/app/acme/issue']);
    // Both attempts were stored; the first, which nobody holds, ended as the retry began.
    const db = new Database(databasePath, { readonly: true });
    onCleanup(() => db.close());
    expect(db.prepare("SELECT revoke_reason FROM sessions WHERE sub = 'u' ORDER BY created_at, session_id").pluck().all()).toEqual(['retried', null]);
    expect((await tm.sessions('u', { refreshToken: pair.refresh_token })).map((s) => s.current)).toEqual([true]);
    // Calls of their own, each with its own key: two sessions.
    await tm.issue({ sub: 'u', ...user });
    expect(await tm.sessions('u')).toHaveLength(2);
  });

  it('a 2xx that is not a token pair (a proxy\'s page) is retried like a 5xx, never handed over as a pair', async () => {
    const { server, appKey } = await setup();
    const actions: Action[] = [];
    const proxy = await flakyProxy(server.url, actions);
    const tm = createClient({ baseUrl: proxy.url, appId: 'acme', appKey, retryDelayMs: 10 });
    const pair = await tm.issue({ sub: 'u', ...user });

    actions.push('forward-then-garble');
    const renewed = await tm.renew({ refresh_token: pair.refresh_token, ...user });
    expect(proxy.seen.slice(1)).toEqual(['/app/acme/renew', '/app/acme/renew']); // used, then answered again from the grace
    expect(verifyIndependently(renewed.auth_token, renewed.public_key).payload).toMatchObject({ sub: 'u' });
    expect((await tm.renew({ refresh_token: renewed.refresh_token, ...user })).key_id).toBe(renewed.key_id); // alive, no fork

    const elsewhere = createClient({ baseUrl: proxy.url, appId: 'acme', appKey, retries: 1, retryDelayMs: 10 });
    actions.push('forward-then-garble', 'forward-then-garble');
    await expect(elsewhere.issue({ sub: 'u', ...user })).rejects.toMatchObject({ kind: 'unavailable', message: /not a token pair/ });
  });

  it('retries a renew only within renewRetryWindowMs: a retry after the reuse grace would end the session as reuse', async () => {
    const { server, appKey, databasePath } = await setup({}, 1);
    const actions: Action[] = [];
    const proxy = await flakyProxy(server.url, actions);
    const tm = createClient({ baseUrl: proxy.url, appId: 'acme', appKey, retryDelayMs: 10, timeoutMs: 1500, renewRetryWindowMs: 800 });
    const pair = await tm.issue({ sub: 'u', ...user });

    actions.push('forward-then-hang');
    await expect(tm.renew({ refresh_token: pair.refresh_token, ...user })).rejects.toMatchObject({ kind: 'unavailable' });
    expect(proxy.seen.slice(1)).toEqual(['/app/acme/renew']); // used once, 1.5 s ago: not tried again
    const db = new Database(databasePath, { readonly: true });
    onCleanup(() => db.close());
    expect(db.prepare('SELECT revoked_at FROM sessions').all()).toEqual([{ revoked_at: null }]);
  });

  it('never retries a 4xx, and gives up after its retries with `unavailable`', async () => {
    const { server, appKey } = await setup();
    const proxy = await flakyProxy(server.url, []);
    const tm = createClient({ baseUrl: proxy.url, appId: 'acme', appKey, retryDelayMs: 10 });
    await expect(tm.renew({ refresh_token: 'not-a-token', ...user })).rejects.toBeInstanceOf(InvalidRefreshTokenError);
    expect(proxy.seen).toHaveLength(1);

    const down = createClient({ baseUrl: 'http://127.0.0.1:9', appId: 'acme', appKey, retries: 2, retryDelayMs: 10 });
    await expect(down.issue({ sub: 'u', ...user })).rejects.toMatchObject({ kind: 'unavailable' });
  });
});

describe('tokenmint/client: a body JSON cannot hold', () => {
  it('is a TypeError before anything is sent, not `unavailable` retried, nor a NaN or Infinity sent as null', async () => {
    const { server, appKey } = await setup();
    const proxy = await flakyProxy(server.url, []);
    const tm = createClient({ baseUrl: proxy.url, appId: 'acme', appKey, retryDelayMs: 10 });
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const unsendable: Array<[Record<string, unknown>, RegExp]> = [
      [{ score: Infinity }, /^"score" is Infinity, which JSON cannot hold$/],
      [{ nested: { ratio: Number.NaN } }, /^"ratio" is NaN, which JSON cannot hold$/],
      [{ ids: [1, -Infinity] }, /^"1" is -Infinity, which JSON cannot hold$/],
      [{ big: 10n }, /BigInt/],
      [cycle, /circular/],
    ];
    for (const [personal, message] of unsendable) {
      const error = await tm.issue({ sub: 'u', ...user, personal }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TypeError);
      expect((error as TypeError).message).toMatch(message);
      await expect(tm.updatePersonal('u', personal)).rejects.toThrow(message);
    }
    expect(proxy.seen).toEqual([]);
    // The same calls with what JSON holds go through, exactly as given.
    const pair = await tm.issue({ sub: 'u', ...user, personal: { score: 1e308, ids: [1, -0.5] } });
    expect(verifyIndependently(pair.auth_token, pair.public_key).payload.personal).toEqual({ score: 1e308, ids: [1, -0.5] });
    expect(proxy.seen).toEqual(['/app/acme/issue']);
  });
});
