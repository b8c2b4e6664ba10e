import { describe, expect, it } from 'vitest';
import { client, harness, type Pair } from '../helpers.js';

describe('request log', () => {
  it('one line per request with route, app, status and duration; never a token or an app key', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme', { refreshNbfSeconds: 0, reuseGraceSeconds: 1 });
    const secrets: string[] = [appKey];
    const issued = (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey)).json()) as Pair;
    secrets.push(issued.auth_token, issued.refresh_token);
    const renewed = (await (await h.post('/app/acme/renew', { refresh_token: issued.refresh_token, ...client }, appKey)).json()) as Pair;
    secrets.push(renewed.auth_token, renewed.refresh_token);
    h.clock.advance(5);
    await h.post('/app/acme/renew', { refresh_token: issued.refresh_token, ...client }, appKey); // reuse
    await h.post('/app/acme/renew', { refresh_token: renewed.refresh_token, ...client }, `Bearer ${appKey}`);
    await h.post('/app/acme/renew', { refresh_token: renewed.refresh_token.slice(0, -3), ...client }, appKey);
    await h.post('/app/acme/sessions', { sub: 'u', refresh_token: renewed.refresh_token }, appKey);
    await h.post('/app/acme/revoke', { refresh_token: renewed.refresh_token }, appKey);
    await h.post('/app/acme/issue', { sub: 'u', ...client }, `${appKey}x`);
    await h.post('/app/acme/issue', '{not json', appKey, { 'x-request-id': appKey }); // an app key where an id goes is not logged

    const requests = h.logs.filter((l) => 'route' in l);
    expect(requests).toHaveLength(9);
    for (const line of requests) {
      expect(line).toMatchObject({ method: 'POST', app_id: 'acme', status: expect.any(Number), duration_ms: expect.any(Number) });
    }
    expect(requests.filter((l) => l.status === 401).every((l) => typeof l.reason === 'string')).toBe(true);
    const raw = h.rawLogs();
    for (const secret of secrets) {
      expect(raw).not.toContain(secret);
      expect(raw).not.toContain(secret.split('.')[2] ?? secret.slice(4));
    }
  });

  it('a request id on every answer and its log line: the caller\'s X-Request-Id when it is one, else a new UUID', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme');
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    const cases: Array<[string | undefined, string | RegExp]> = [
      ['backend-req_42', 'backend-req_42'],
      ['x'.repeat(128), 'x'.repeat(128)],
      [undefined, uuid],
      ['x'.repeat(129), uuid],
      ['two words', uuid],
      ['eyJhbGciOiJFUzI1NiJ9.e30.sig', uuid], // a token's shape
      [appKey, uuid],
    ];
    for (const [given, expected] of cases) {
      const res = await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey, given === undefined ? {} : { 'x-request-id': given });
      expect(res.status).toBe(200);
      const id = res.headers.get('x-request-id');
      expect(id).toMatch(typeof expected === 'string' ? new RegExp(`^${expected}$`) : expected);
      expect(h.logs.at(-1)).toMatchObject({ route: '/app/:app_id/issue', status: 200, request_id: id });
    }
    // Refusals and routes of no app carry one too.
    for (const [path, status] of [['/app/acme/renew', 401], ['/app/acme/issue', 400], ['/nowhere', 404]] as const) {
      const res = await h.post(path, path.endsWith('issue') ? { sub: 7 } : { refresh_token: 'x', ...client }, appKey, { 'x-request-id': `case-${status}` });
      expect([res.status, res.headers.get('x-request-id')]).toEqual([status, `case-${status}`]);
      expect(h.logs.at(-1)).toMatchObject({ status, request_id: `case-${status}` });
    }
    expect(h.rawLogs()).not.toContain(appKey.slice(4));
  });

  it('an app key or a token put in the path where the app id goes is answered, and its line has no app_id', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme');
    const issued = (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey)).json()) as Pair;
    // A backend whose app id and app key were swapped; a token pasted where the id goes.
    const pasted = [appKey, issued.refresh_token];
    for (const value of pasted) {
      expect((await h.post(`/app/${value}/issue`, { sub: 'u', ...client }, 'acme')).status).toBe(403);
      expect(h.logs.at(-1)).toMatchObject({ route: '/app/:app_id/issue', status: 403 });
      expect(h.logs.at(-1)).not.toHaveProperty('app_id');
      expect((await h.app.request(`/app/${value}/jwks.json`)).status).toBe(404);
      expect(h.logs.at(-1)).not.toHaveProperty('app_id');
    }
    const raw = h.rawLogs();
    for (const value of pasted) expect(raw).not.toContain(value.slice(4, 30));
    // A well-formed id is logged, known or not.
    await h.post('/app/nope/issue', { sub: 'u', ...client }, appKey);
    expect(h.logs.at(-1)).toMatchObject({ app_id: 'nope', status: 403 });
  });
});
