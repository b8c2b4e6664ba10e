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
    await h.post('/app/acme/revoke', { refresh_token: renewed.refresh_token }, appKey);
    await h.post('/app/acme/issue', { sub: 'u', ...client }, `${appKey}x`);
    await h.post('/app/acme/issue', '{not json', appKey);

    const requests = h.logs.filter((l) => 'route' in l);
    expect(requests).toHaveLength(8);
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
});
