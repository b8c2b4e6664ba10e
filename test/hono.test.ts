import fc from 'fast-check';
import { Hono } from 'hono';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createClient } from '../src/client.js';
import { tokenmintSession, type SessionVariables } from '../src/hono.js';
import { decodePart, onCleanup, tempDir, testEnv } from './helpers.js';
import { fuzzParams, hostileToken } from './hostile-tokens.js';
import { cliProcess, startServer } from './processes.js';

/**
 * A real tokenmint, and an app backend built on tokenmint/hono, reached through `app.request`. The
 * auth token lives 2 s: exp is in whole seconds, so a 1-second token issued late in a second may
 * already be expired when the middleware checks it.
 */
async function setup(cookies: { secure?: boolean } = {}, accessTtlSeconds = 2) {
  const dir = tempDir();
  const env = testEnv(dir);
  const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--access-ttl', String(accessTtlSeconds), '--refresh-nbf', '0', '--reuse-grace', '10');
  const server = await startServer(env, dir);
  const client = createClient({ baseUrl: server.url, appId: 'acme', appKey: String(appKey) });
  // The JWKS is fetched through a relay (a CDN, say) that can be made to fail, and cached 1 s.
  const relay = await jwksRelay(`${server.url}/app/acme/jwks.json`);
  const auth = tokenmintSession({ client, appId: 'acme', audience: 'web-app', jwksUrl: relay.url, jwksMaxAgeSeconds: 1, cookies, trustProxyHeader: 'x-forwarded-for' });
  const app = new Hono<{ Variables: SessionVariables }>()
    .post('/login', async (c) => c.json(await auth.login(c, { sub: 'user-1', personal: { name: 'Ada' } })))
    .post('/login-big', (c) => auth.login(c, { sub: 'user-1', personal: { bio: 'x'.repeat(3000) } }).then((claims) => c.json(claims), (e: Error) => c.json({ error: e.message }, 500)))
    .post('/logout', async (c) => (await auth.logout(c), c.json({ ok: true })))
    // A password change: every other session ends, this browser stays logged in with a fresh pair.
    .post('/password-changed', auth.session(), async (c) => {
      const { sub } = c.get('session');
      await client.revokeSubject(sub);
      return c.json(await auth.login(c, { sub }));
    })
    .get('/api/me', auth.session(), (c) => c.json(c.get('session')))
    // "Your devices", and "log out that device".
    .get('/api/devices', auth.session(), async (c) => c.json(await auth.devices(c)))
    .post('/api/devices/:id/logout', auth.session(), async (c) => c.json({ ended: await client.revokeSession(c.get('session').sub, c.req.param('id')) }))
    .post('/api/logout-others', auth.session(), async (c) => c.json({ ended: await auth.logoutOthers(c).catch((e: Error) => e.name) }))
    // The browser-driven flow: the API answers 401, the page calls the refresh route (fetchWithRefresh).
    .get('/api/strict', auth.session({ renew: false }), (c) => c.json(c.get('session')))
    .post('/refresh', async (c) => ((await auth.refresh(c)) ? c.body(null, 204) : c.json({ message: 'not logged in' }, 401)));

  // A browser: a tiny cookie jar, kept as a browser would keep it.
  const browser = () => {
    const jar = new Map<string, string>();
    const request = async (method: string, path: string, { userAgent = 'test-browser/1.0', forwardedFor = '203.0.113.9' } = {}) => {
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      const res = await app.request(path, { method, headers: { cookie, 'x-forwarded-for': forwardedFor, 'user-agent': userAgent } });
      const setCookies = res.headers.getSetCookie();
      for (const line of setCookies) {
        const [pair] = line.split(';');
        const [name, value] = pair!.split('=') as [string, string];
        if (/Max-Age=0/.test(line) || value === '') jar.delete(name);
        else jar.set(name, value);
      }
      return { res, setCookies };
    };
    return { request, jar };
  };
  return { ...browser(), browser, client, server, relay };
}

/** Relays `url` (the app's JWKS), or answers `failWith` while it is set. */
async function jwksRelay(url: string) {
  let failWith: number | undefined;
  const relay = http.createServer((_req, res) => {
    if (failWith !== undefined) return void res.writeHead(failWith).end();
    fetch(url).then(
      async (answer) => res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text()),
      () => res.writeHead(502).end(),
    );
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise((resolve) => relay.close(resolve)));
  return { url: `http://127.0.0.1:${(relay.address() as AddressInfo).port}/jwks.json`, fail: (status: number | undefined) => void (failWith = status) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('tokenmint/hono session middleware', () => {
  it('login sets HttpOnly, Secure, SameSite cookies whose Max-Age is the token\'s own lifetime', async () => {
    const { request, jar, client } = await setup();
    const { res, setCookies } = await request('POST', '/login');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ sub: 'user-1', ip: '203.0.113.9', useragent: 'test-browser/1.0', personal: { name: 'Ada' } });
    const access = setCookies.find((l) => l.startsWith('access_token='))!;
    const refresh = setCookies.find((l) => l.startsWith('refresh_token='))!;
    for (const line of [access, refresh]) expect(line).toMatch(/; HttpOnly/), expect(line).toMatch(/; Secure/), expect(line).toMatch(/; SameSite=Lax/), expect(line).toMatch(/; Path=\//);
    expect(access).toMatch(/Max-Age=[12];/);
    const refreshClaims = decodePart(jar.get('refresh_token')!, 1);
    expect(Number(/Max-Age=(\d+)/.exec(refresh)![1])).toBeGreaterThan((refreshClaims.exp as number) - (refreshClaims.iat as number) - 3);

    // personal claims that make the auth token too large for a browser's cookie fail the login loudly.
    const { res: bigLogin, setCookies: bigCookies } = await request('POST', '/login-big');
    expect(bigLogin.status).toBe(500);
    expect(((await bigLogin.json()) as { error: string }).error).toMatch(/the access_token cookie would be \d+ bytes, over the 4096 a browser keeps/);
    expect(bigCookies).toEqual([]);
    // Its session, which nobody can hold, has ended: the user's devices are the first login's alone.
    expect((await client.sessions('user-1')).map((s) => s.session_id)).toEqual([refreshClaims.jid]);

    // A user agent longer than tokenmint accepts is cut to its 1,024 characters, not a failed login.
    const long = `Mozilla/5.0 ${'x'.repeat(3000)}`;
    const { res: longLogin } = await request('POST', '/login', { userAgent: long });
    expect(longLogin.status).toBe(200);
    expect(((await longLogin.json()) as { useragent: string }).useragent).toBe(long.slice(0, 1024));

    // A proxy that writes the port, a zone, or an IPv4-mapped address, still gives tokenmint a plain IP.
    for (const [forwardedFor, ip] of [
      ['198.51.100.7:4711', '198.51.100.7'],
      ['[2001:db8::1]:443', '2001:db8::1'],
      ['::ffff:198.51.100.8', '198.51.100.8'],
      ['2001:db8::2', '2001:db8::2'],
      ['fe80::1%eth0', 'fe80::1'],
      // No IP there ("unknown" is what some proxies write): the socket's address, here none, so loopback.
      // Until this version tokenmint refused it (400) and the login failed.
      ['unknown', '127.0.0.1'],
      ['198.51.100.7, not-an-address', '127.0.0.1'],
    ]) {
      const { res } = await request('POST', '/login', { forwardedFor });
      expect([res.status, ((await res.json()) as { ip: string }).ip]).toEqual([200, ip]);
    }
  });

  it('renews on an expired access cookie and carries on; concurrent requests share one renew; logout ends it', async () => {
    const { request, jar } = await setup();
    await request('POST', '/login');
    expect((await request('GET', '/api/me')).res.status).toBe(200);
    const firstRefresh = jar.get('refresh_token');

    await sleep((decodePart(jar.get('access_token')!, 1).exp as number) * 1000 + 100 - Date.now()); // it has expired
    const [a, b] = await Promise.all([request('GET', '/api/me'), request('GET', '/api/me')]);
    expect([a.res.status, b.res.status]).toEqual([200, 200]);
    const renewed = [a, b].map((r) => r.setCookies.find((l) => l.startsWith('refresh_token='))!.split(';')[0]);
    expect(renewed[0]).toBe(renewed[1]); // one renew, one child: no fork
    expect(jar.get('refresh_token')).not.toBe(firstRefresh);

    await request('POST', '/logout');
    expect(jar.size).toBe(0);
    expect((await request('GET', '/api/me')).res.status).toBe(401);
  });

  it('a renew whose pair would not fit in a cookie ends the session at once: no reuse alarm from the browser sending its used token again', async () => {
    const { request, jar, client, server } = await setup();
    await request('POST', '/login');
    await client.updatePersonal('user-1', { bio: 'x'.repeat(3000) }); // the next auth token is too large
    await sleep((decodePart(jar.get('access_token')!, 1).exp as number) * 1000 + 100 - Date.now());
    const failed = await request('GET', '/api/me');
    expect(failed.res.status).toBe(500);
    expect(await client.sessions('user-1')).toEqual([]);
    // The browser still holds the used refresh token: it is refused as the token of an ended session, not as reuse.
    expect((await request('GET', '/api/me')).res.status).toBe(401);
    const reasons = server.stdout().split('\n').filter((l) => l.includes('"status":401')).map((l) => (JSON.parse(l) as { reason: string }).reason);
    expect(reasons).toEqual(['session revoked (client)']);
  });

  it('a login in a browser that has a session ends that one: its cookies were the only holder', async () => {
    const { request, jar, client } = await setup();
    await request('POST', '/login');
    const replaced = jar.get('refresh_token')!;
    await request('POST', '/login');
    expect((await client.sessions('user-1')).map((s) => s.session_id)).toEqual([decodePart(jar.get('refresh_token')!, 1).jid]);
    await expect(client.renew({ refresh_token: replaced, ip: '203.0.113.9', useragent: 'test-browser/1.0' })).rejects.toMatchObject({ kind: 'invalid_refresh_token' });
  });

  it('a password change ends every other session (revokeSubject, then login): this browser renews on, the other is logged out at its next renew', async () => {
    const { request, jar, browser } = await setup();
    const other = browser();
    await request('POST', '/login');
    await other.request('POST', '/login');
    const before = jar.get('refresh_token');
    expect((await request('POST', '/password-changed')).res.status).toBe(200);
    expect(jar.get('refresh_token')).not.toBe(before);

    const expiry = Math.max(...[jar, other.jar].map((j) => decodePart(j.get('access_token')!, 1).exp as number));
    await sleep(expiry * 1000 + 100 - Date.now()); // both access tokens have expired
    const here = await request('GET', '/api/me');
    expect(here.res.status).toBe(200);
    expect(here.setCookies.some((l) => l.startsWith('refresh_token='))).toBe(true); // it renewed
    expect((await other.request('GET', '/api/me')).res.status).toBe(401);
    expect(other.jar.size).toBe(0);
  });

  it('"your devices": each browser sees the user\'s sessions with its own marked current, and can log another one out', async () => {
    const { request, browser } = await setup();
    const phone = browser();
    await request('POST', '/login');
    await phone.request('POST', '/login', { userAgent: 'phone-browser/2.0', forwardedFor: '198.51.100.4' });
    const devices = async (who: { request: typeof request }) => (await (await who.request('GET', '/api/devices')).res.json()) as Array<{ session_id: string; useragent: string; ip: string; current: boolean }>;
    const seen = await devices({ request });
    expect(seen.map((d) => [d.useragent, d.ip, d.current])).toEqual([['phone-browser/2.0', '198.51.100.4', false], ['test-browser/1.0', '203.0.113.9', true]]);
    expect((await devices(phone)).map((d) => d.current)).toEqual([true, false]);

    const ended = await request('POST', `/api/devices/${seen[0]!.session_id}/logout`);
    expect(await ended.res.json()).toEqual({ ended: 1 });
    expect((await devices({ request })).map((d) => d.useragent)).toEqual(['test-browser/1.0']);
    phone.jar.delete('access_token'); // its next request renews, and cannot
    expect((await phone.request('GET', '/api/me')).res.status).toBe(401);
  });

  it('"log out everywhere else" ends the user\'s other sessions and keeps this browser\'s; with no refresh cookie it ends nothing', async () => {
    const { request, jar, browser } = await setup();
    const [phone, tablet] = [browser(), browser()];
    for (const who of [{ request }, phone, tablet]) await who.request('POST', '/login');
    // No refresh cookie: which session to keep is unknown, so none is ended.
    const refresh = jar.get('refresh_token')!;
    jar.delete('refresh_token');
    expect(await (await request('POST', '/api/logout-others')).res.json()).toEqual({ ended: 'InvalidRefreshTokenError' });
    jar.set('refresh_token', refresh);

    expect(await (await request('POST', '/api/logout-others')).res.json()).toEqual({ ended: 2 });
    for (const j of [jar, phone.jar, tablet.jar]) j.delete('access_token'); // each one's next request renews
    expect((await request('GET', '/api/me')).res.status).toBe(200);
    expect((await phone.request('GET', '/api/me')).res.status).toBe(401);
    expect((await tablet.request('GET', '/api/me')).res.status).toBe(401);
  });

  it('an invalid refresh cookie clears both cookies and answers 401; no cookies at all is 401', async () => {
    const { request, jar } = await setup({ secure: false });
    expect((await request('GET', '/api/me')).res.status).toBe(401);
    const login = await request('POST', '/login');
    expect(login.setCookies.every((l) => !/; Secure/.test(l))).toBe(true); // switched off for localhost development
    jar.set('refresh_token', `${jar.get('refresh_token')!.slice(0, -4)}AAAA`);
    jar.delete('access_token');
    const res = await request('GET', '/api/me');
    expect(res.res.status).toBe(401);
    expect(res.setCookies.filter((l) => /Max-Age=0/.test(l))).toHaveLength(2);
    expect(jar.size).toBe(0);
  });

  it('session({ renew: false }) answers 401 on an expired access token and leaves the cookies; refresh() renews once, then has nothing to renew', async () => {
    // 3 s, so that a fresh access token is surely still valid for the next few requests.
    const { request, jar } = await setup({}, 3);
    await request('POST', '/login');
    expect((await request('GET', '/api/strict')).res.status).toBe(200);
    const firstRefresh = jar.get('refresh_token');

    await sleep((decodePart(jar.get('access_token')!, 1).exp as number) * 1000 + 100 - Date.now()); // it has expired
    const denied = await request('GET', '/api/strict');
    expect(denied.res.status).toBe(401);
    expect(denied.setCookies).toEqual([]);
    expect(jar.get('refresh_token')).toBe(firstRefresh);

    const refreshed = await request('POST', '/refresh');
    expect(refreshed.res.status).toBe(204);
    expect(refreshed.setCookies.map((l) => l.split('=')[0]).sort()).toEqual(['access_token', 'refresh_token']);
    const secondRefresh = jar.get('refresh_token');
    expect(secondRefresh).not.toBe(firstRefresh);
    // A second tab's refresh right after carries the new cookies: the access token is valid, nothing renews.
    const again = await request('POST', '/refresh');
    expect(again.res.status).toBe(204);
    expect(again.setCookies).toEqual([]);
    expect(jar.get('refresh_token')).toBe(secondRefresh);
    expect((await request('GET', '/api/strict')).res.status).toBe(200);

    // The used first token again, within the reuse grace (10 s): answered with the same child, 204.
    jar.set('refresh_token', firstRefresh!);
    jar.delete('access_token');
    expect((await request('POST', '/refresh')).res.status).toBe(204);
    // A refresh token that cannot renew (its session logged out): 401 and both cookies cleared.
    await request('POST', '/logout');
    jar.set('refresh_token', secondRefresh!);
    const refused = await request('POST', '/refresh');
    expect(refused.res.status).toBe(401);
    expect(jar.size).toBe(0);
  });

  it('a JWKS that cannot be fetched is an error, not a logout: nothing renews and no cookie changes; all is well once it is back', async () => {
    const { request, jar, relay, server } = await setup({}, 30);
    await request('POST', '/login');
    const cookies = new Map(jar);
    expect((await request('GET', '/api/me')).res.status).toBe(200);
    relay.fail(503);
    await sleep(1100); // past the JWKS's 1 s in the verifier's cache
    for (const [method, path] of [['GET', '/api/me'], ['GET', '/api/strict'], ['POST', '/refresh']] as const) {
      const { res, setCookies } = await request(method, path);
      expect([path, res.status, setCookies]).toEqual([path, 500, []]); // hono's answer to an error the app does not handle
    }
    expect(jar).toEqual(cookies);
    // Until this version each of those renewed (the access cookie taken as invalid) and was answered 401.
    expect(server.stdout()).not.toMatch(/"route":"\/app\/:app_id\/renew"/);
    relay.fail(undefined);
    expect((await request('GET', '/api/me')).res.status).toBe(200);
    expect(jar).toEqual(cookies);
  });

  it('an access cookie that is not the token it was (cut, re-encoded, other claims or headers) is no session: 401, never an error', async () => {
    const { request, jar } = await setup({}, 30);
    await request('POST', '/login');
    const token = jar.get('access_token')!;
    jar.delete('refresh_token'); // nothing to renew: the access cookie alone decides
    await fc.assert(
      fc.asyncProperty(hostileToken(token), async (hostile) => {
        jar.set('access_token', encodeURIComponent(hostile)); // as a browser may send it; hono decodes it
        const { res } = await request('GET', '/api/me');
        expect([res.status, await res.json()]).toEqual(hostile === token ? [200, expect.objectContaining({ sub: 'user-1' })] : [401, { message: 'not logged in' }]);
      }),
      fuzzParams,
    );
  });

  it('misuse is a TypeError when the middleware is made, not every request taken as logged out', () => {
    const client = createClient({ baseUrl: 'http://127.0.0.1:1', appId: 'acme', appKey: 'tmk_x' });
    const options = { client, appId: 'acme', audience: 'web-app', jwksUrl: 'http://127.0.0.1:1/app/acme/jwks.json' };
    expect(() => tokenmintSession({ ...options, audience: undefined as unknown as string })).toThrow(new TypeError('tokenmintSession: audience must be a non-empty string'));
    expect(() => tokenmintSession({ ...options, jwksUrl: '' })).toThrow(new TypeError('tokenmintSession: jwksUrl must be a non-empty string'));
    // It is the iss every auth token is checked against: no token of an app would pass.
    expect(() => tokenmintSession({ ...options, appId: 'ACME' })).toThrow(
      new TypeError('tokenmintSession: appId must be 1–63 characters of a-z 0-9 _ -, starting with a letter or digit, not "ACME"'),
    );
    expect(() => tokenmintSession({ ...options, jwksMaxAgeSeconds: -1 })).toThrow(new TypeError('tokenmintSession: jwksMaxAgeSeconds must be a number of seconds above 0'));
    expect(() => tokenmintSession(options)).not.toThrow();
    expect(() => tokenmintSession({ ...options, jwksMaxAgeSeconds: 60 })).not.toThrow();
  });
});
