import { describe, expect, it } from 'vitest';
import { createAppKeyLimiter, RECORDED_BLOCKS_PER_WINDOW } from '../../src/http/app-key-limiter.js';
import { clientNetwork } from '../../src/http/client-address.js';
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
    // Every request from it to that app: the public JWKS too (readable by a page, with its Retry-After),
    // while its preflight is answered as any other.
    const jwks = (address: string, init: RequestInit = {}, appId = 'acme') => h.app.request(`/app/${appId}/jwks.json`, init, { incoming: { socket: { remoteAddress: address } } });
    const blockedJwks = await jwks('198.51.100.9', { headers: { origin: 'https://app.example' } });
    expect([blockedJwks.status, await blockedJwks.json(), blockedJwks.headers.get('retry-after')]).toEqual([429, { message: 'too many requests' }, '60']);
    expect(blockedJwks.headers.get('access-control-allow-origin')).toBe('*');
    expect(blockedJwks.headers.get('access-control-expose-headers')).toBe('ETag,Retry-After');
    expect(blockedJwks.headers.get('etag')).toBeNull();
    expect((await jwks('198.51.100.9', { method: 'HEAD' })).status).toBe(429);
    const preflight = await jwks('198.51.100.9', { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } });
    expect(preflight.status).toBe(204);
    expect((await jwks('198.51.100.10')).status).toBe(200);
    expect((await jwks('198.51.100.9', {}, 'other')).status).toBe(200);

    h.clock.advance(30);
    expect((await from(h, '198.51.100.9', 'acme', acme.appKey)).headers.get('retry-after')).toBe('30');
    h.clock.advance(30);
    expect((await from(h, '198.51.100.9', 'acme', acme.appKey)).status).toBe(200);
    expect((await jwks('198.51.100.9')).status).toBe(200);
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

  it('counts each address apart, as the contract says, whatever its spelling: an IPv6 zone, leading zeros, an IPv4-mapped form', async () => {
    const h = await harness({ env: { APP_KEY_FAILURE_LIMIT: '3' } });
    const acme = await h.createApp('acme');
    for (const address of ['2001:db8:a:b::1', '2001:0db8:000a:000b:0:0:0:1%eth0', '2001:DB8:A:B::0.0.0.1']) expect((await from(h, address, 'acme', 'tmk_guess')).status).toBe(403);
    expect((await from(h, '2001:db8:a:b::1', 'acme', acme.appKey)).status).toBe(429);
    expect((await from(h, '2001:db8:a:b::2', 'acme', acme.appKey)).status).toBe(200); // another address of the same /64
    for (const address of ['198.51.100.7', '::ffff:198.51.100.7', '::FFFF:198.51.100.7']) await from(h, address, 'acme', 'tmk_guess');
    expect((await from(h, '198.51.100.7', 'acme', acme.appKey)).status).toBe(429);
    expect((await from(h, '198.51.100.8', 'acme', acme.appKey)).status).toBe(200);
  });

  it('counts an IPv6 network instead with APP_KEY_FAILURE_IPV6_PREFIX (64: a client that sends from every address of its /64)', async () => {
    const h = await harness({ env: { APP_KEY_FAILURE_LIMIT: '3', APP_KEY_FAILURE_IPV6_PREFIX: '64' } });
    const acme = await h.createApp('acme');
    for (const address of ['2001:db8:a:b::1', '2001:db8:a:b:ffff:1:2:3', '2001:0db8:000a:000b::99%eth0']) expect((await from(h, address, 'acme', 'tmk_guess')).status).toBe(403);
    expect((await from(h, '2001:db8:a:b::4242', 'acme', acme.appKey)).status).toBe(429);
    expect((await from(h, '2001:db8:a:c::1', 'acme', acme.appKey)).status).toBe(200); // the next /64
    expect((await from(h, '198.51.100.8', 'acme', acme.appKey)).status).toBe(200);

    const addresses = ['2001:db8::', '::', '::1', '1:2:3:4:5:6:7:8', '1:2:3::5.6.7.8', '1:2:3:4:5:6:5.6.7.8', 'fe80::1%lo', '2001:db8:a:ff01::', '203.0.113.7', 'unknown', '::ffff:1.2.3.4'];
    expect(addresses.map((a) => clientNetwork(a, 128))).toEqual([
      '2001:db8:0:0:0:0:0:0', '0:0:0:0:0:0:0:0', '0:0:0:0:0:0:0:1', '1:2:3:4:5:6:7:8', '1:2:3:0:0:0:506:708', '1:2:3:4:5:6:506:708', 'fe80:0:0:0:0:0:0:1', '2001:db8:a:ff01:0:0:0:0', '203.0.113.7', 'unknown', '1.2.3.4',
    ]);
    expect(addresses.map((a) => clientNetwork(a, 56))).toEqual([
      '2001:db8:0:0:0:0:0:0/56', '0:0:0:0:0:0:0:0/56', '0:0:0:0:0:0:0:0/56', '1:2:3:0:0:0:0:0/56', '1:2:3:0:0:0:0:0/56', '1:2:3:0:0:0:0:0/56', 'fe80:0:0:0:0:0:0:0/56', '2001:db8:a:ff00:0:0:0:0/56', '203.0.113.7', 'unknown', '1.2.3.4',
    ]);
  });

  it('records a block in the audit log only for an app that exists, and at most RECORDED_BLOCKS_PER_WINDOW of an app per window', async () => {
    const h = await harness({ env: { APP_KEY_FAILURE_LIMIT: '1', APP_KEY_FAILURE_WINDOW_SECONDS: '60' } });
    const acme = await h.createApp('acme');
    const blocks = async () => (await h.tm.repo.listAudit({ limit: 1000 })).filter((e) => e.event === 'security.app_key_blocked');
    // Invented app ids: each address is blocked on each, and nothing is written.
    for (let i = 0; i < 50; i++) expect((await from(h, '192.0.2.1', `nope${i}`, 'tmk_guess')).status).toBe(403);
    expect((await from(h, '192.0.2.1', 'nope0', 'tmk_guess')).status).toBe(429);
    expect(await blocks()).toEqual([]);

    // One address after another blocked on acme: the first 100 are recorded, the last of them saying so.
    const addresses = RECORDED_BLOCKS_PER_WINDOW + 20;
    for (let i = 0; i < addresses; i++) expect((await from(h, `2001:db8:${i.toString(16)}::1`, 'acme', 'tmk_guess')).status).toBe(403);
    for (let i = 0; i < addresses; i++) expect((await from(h, `2001:db8:${i.toString(16)}::1`, 'acme', acme.appKey)).status).toBe(429);
    const recorded = await blocks();
    expect(recorded).toHaveLength(RECORDED_BLOCKS_PER_WINDOW);
    expect(recorded.map((e) => JSON.parse(e.detail!) as Record<string, unknown>).filter((d) => d.later_blocks_not_recorded)).toEqual([{ reason: 'wrong app key', later_blocks_not_recorded: true, request_id: expect.any(String) }]);
    expect(recorded[0]!.clientAddress).toBe(`2001:db8:${(RECORDED_BLOCKS_PER_WINDOW - 1).toString(16)}::1`); // newest first

    h.clock.advance(60); // a new window
    expect((await from(h, '198.51.100.1', 'acme', 'tmk_guess')).status).toBe(403);
    expect(await blocks()).toHaveLength(RECORDED_BLOCKS_PER_WINDOW + 1);
  });

  it('remembers a bounded number of clients, forgetting the oldest first', () => {
    const limiter = createAppKeyLimiter({ limit: 3, windowSeconds: 60, maxClients: 100, clock: manualClock() });
    for (let i = 0; i < 1000; i++) limiter.recordFailure('acme', `10.0.${i >> 8}.${i & 255}`);
    expect(limiter.size).toBe(100);
    for (let i = 0; i < 3; i++) limiter.recordFailure('acme', 'attacker');
    expect(limiter.retryAfterSeconds('acme', 'attacker')).toBe(60);
  });

  it('shares each failure it counts, and counts those another worker shared without sharing them again', () => {
    const shared: string[][] = [];
    const limiter = createAppKeyLimiter({ limit: 3, windowSeconds: 60, maxClients: 100, clock: manualClock(), share: (appId, client) => shared.push([appId, client]) });
    expect(limiter.recordFailure('acme', '198.51.100.1')).toBe(false);
    limiter.recordSharedFailure('acme', '198.51.100.1');
    expect(shared).toEqual([['acme', '198.51.100.1']]); // the shared one is not sent back
    expect(limiter.retryAfterSeconds('acme', '198.51.100.1')).toBe(0);
    expect(limiter.recordFailure('acme', '198.51.100.1')).toBe(true); // the third, counting the other worker's
    expect(limiter.retryAfterSeconds('acme', '198.51.100.1')).toBe(60);
    // Blocked by others' failures alone: the third says it started the block here, to be recorded here.
    expect([1, 2, 3].map(() => limiter.recordSharedFailure('beta', '198.51.100.1'))).toEqual([false, false, true]);
    expect(limiter.retryAfterSeconds('beta', '198.51.100.1')).toBe(60);
    expect(shared).toHaveLength(2);
  });

  it('hands over the counts that still matter (a worker that starts takes the primary\'s), replacing its own for those pairs', () => {
    const clock = manualClock();
    const primary = createAppKeyLimiter({ limit: 3, windowSeconds: 60, maxClients: 2, clock });
    primary.recordSharedFailure('acme', '198.51.100.2'); // one failure, its window ends in 60 s
    clock.advance(10);
    for (let i = 0; i < 3; i++) primary.recordSharedFailure('acme', '198.51.100.1'); // blocked for 60 s
    clock.advance(20);
    const worker = createAppKeyLimiter({ limit: 3, windowSeconds: 60, maxClients: 2, clock });
    worker.recordSharedFailure('acme', '198.51.100.2'); // relayed to it too, and already in the primary's count
    worker.load(primary.counts());
    expect(worker.retryAfterSeconds('acme', '198.51.100.1')).toBe(40);
    expect(worker.recordFailure('acme', '198.51.100.2')).toBe(false); // 2 failures, not 3: replaced, not added
    expect(worker.recordFailure('acme', '198.51.100.2')).toBe(true);

    // A window over without a block is not handed over; a block is, until it ends.
    clock.advance(31); // the second pair's window is over; the first's block has 9 s left
    expect(primary.counts().map(([key]) => key.split('\u0000')[1])).toEqual(['198.51.100.1']);
    clock.advance(10);
    expect(primary.counts()).toEqual([]);
    // At most maxClients pairs, the newest kept.
    const small = createAppKeyLimiter({ limit: 3, windowSeconds: 60, maxClients: 2, clock });
    small.recordFailure('acme', '203.0.113.1');
    small.load([...['203.0.113.2', '203.0.113.3'].map((c) => [`acme\u0000${c}`, { windowStart: clock(), failures: 1, blockedUntil: 0 }] as [string, { windowStart: number; failures: number; blockedUntil: number }])]);
    expect(small.counts().map(([key]) => key.split('\u0000')[1])).toEqual(['203.0.113.2', '203.0.113.3']);
  });
});
