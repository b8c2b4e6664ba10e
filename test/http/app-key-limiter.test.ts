import { describe, expect, it } from 'vitest';
import { createAppKeyLimiter } from '../../src/http/app-key-limiter.js';
import { client, harness, manualClock, type Harness } from '../helpers.js';

/** A request from a given socket address, as @hono/node-server would pass it. */
const from = (h: Harness, address: string, appId: string, appKey: string) =>
  h.app.request(
    `/app/${appId}/issue`,
    { method: 'POST', headers: { authorization: appKey }, body: JSON.stringify({ sub: 'u', ...client }) },
    { incoming: { socket: { remoteAddress: address } } },
  );

describe('app key brute force (429)', () => {
  it('blocks one address on one app after the threshold, even with the right key, and only that pair', async () => {
    const h = await harness({ env: { APP_KEY_FAILURE_LIMIT: '5', APP_KEY_FAILURE_WINDOW_SECONDS: '60' } });
    const acme = await h.createApp('acme');
    const other = await h.createApp('other');
    for (let i = 0; i < 4; i++) expect((await from(h, '198.51.100.9', 'acme', 'tmk_guess')).status).toBe(403);
    expect((await from(h, '198.51.100.9', 'acme', acme.appKey)).status).toBe(200); // a few typos never trip it
    expect((await from(h, '198.51.100.9', 'acme', 'tmk_guess')).status).toBe(403); // the 5th failure

    const blocked = await from(h, '198.51.100.9', 'acme', acme.appKey);
    expect(blocked.status).toBe(429);
    expect(await blocked.json()).toEqual({ message: 'too many requests' });
    expect(Number(blocked.headers.get('retry-after'))).toBe(60);

    expect((await from(h, '198.51.100.10', 'acme', acme.appKey)).status).toBe(200); // another address
    expect((await from(h, '198.51.100.9', 'other', other.appKey)).status).toBe(200); // another app

    h.clock.advance(30);
    expect((await from(h, '198.51.100.9', 'acme', acme.appKey)).headers.get('retry-after')).toBe('30');
    h.clock.advance(30);
    expect((await from(h, '198.51.100.9', 'acme', acme.appKey)).status).toBe(200);
  });

  it('counts by the trusted proxy header when one is configured', async () => {
    const h = await harness({ env: { APP_KEY_FAILURE_LIMIT: '2', TRUST_PROXY_HEADER: 'X-Forwarded-For' } });
    const acme = await h.createApp('acme');
    const body = { sub: 'u', ...client };
    for (let i = 0; i < 2; i++) await h.post('/app/acme/issue', body, 'bad', { 'x-forwarded-for': 'spoofed, 192.0.2.1' });
    expect((await h.post('/app/acme/issue', body, acme.appKey, { 'x-forwarded-for': '192.0.2.1' })).status).toBe(429);
    expect((await h.post('/app/acme/issue', body, acme.appKey, { 'x-forwarded-for': '192.0.2.2' })).status).toBe(200);
  });

  it('remembers nothing for a path that cannot name an app, and little for a forged long address', async () => {
    const h = await harness({ env: { APP_KEY_FAILURE_LIMIT: '2', TRUST_PROXY_HEADER: 'X-Forwarded-For' } });
    const acme = await h.createApp('acme');
    const body = { sub: 'u', ...client };
    for (const id of ['x'.repeat(64), 'a'.repeat(15_000), 'Acme', '-acme', 'ac%20me']) {
      const res = await h.post(`/app/${id}/issue`, body, acme.appKey, { 'x-forwarded-for': '192.0.2.1' });
      expect([res.status, await res.json()]).toEqual([403, { message: 'invalid app key' }]);
    }
    expect(h.limiter.size).toBe(0);
    expect((await h.post('/app/acme/issue', body, acme.appKey, { 'x-forwarded-for': '192.0.2.1' })).status).toBe(200); // not blocked

    const forged = `${'9'.repeat(10_000)}`;
    for (let i = 0; i < 2; i++) await h.post('/app/acme/issue', body, 'bad', { 'x-forwarded-for': forged });
    expect(h.limiter.size).toBe(1);
    expect((await h.post('/app/acme/issue', body, acme.appKey, { 'x-forwarded-for': forged })).status).toBe(429); // still counted
    expect((await h.post('/app/acme/issue', body, acme.appKey, { 'x-forwarded-for': `${forged}1` })).status).toBe(429); // kept as its first 64 characters
  });

  it('remembers a bounded number of clients, forgetting the oldest first', () => {
    const limiter = createAppKeyLimiter({ limit: 3, windowSeconds: 60, maxClients: 100, clock: manualClock() });
    for (let i = 0; i < 1000; i++) limiter.recordFailure('acme', `10.0.${i >> 8}.${i & 255}`);
    expect(limiter.size).toBe(100);
    for (let i = 0; i < 3; i++) limiter.recordFailure('acme', 'attacker');
    expect(limiter.retryAfterSeconds('acme', 'attacker')).toBe(60);
  });
});
