import { describe, expect, it } from 'vitest';
import { harness } from '../helpers.js';

describe('GET /app/:app_id/jwks.json for caching verifiers', () => {
  it('sends Cache-Control with the publication lead, an ETag, 304 on If-None-Match, and CORS for browsers', async () => {
    const h = await harness({ env: { JWKS_MAX_AGE_SECONDS: '120' } });
    await h.createApp('acme');
    const res = await h.app.request('/app/acme/jwks.json', { headers: { origin: 'https://app.example' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('public, max-age=120');
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    const tag = res.headers.get('etag');
    expect(tag).toMatch(/^"[^"]+"$/);

    const again = await h.app.request('/app/acme/jwks.json', { headers: { 'if-none-match': tag! } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');

    await h.tm.keyring.rotate('acme');
    const changed = await h.app.request('/app/acme/jwks.json', { headers: { 'if-none-match': tag! } });
    expect(changed.status).toBe(200);
    expect(changed.headers.get('etag')).not.toBe(tag);
  });

  it('answers a browser\'s CORS preflight (OPTIONS) for any origin and header, so that a page\'s fetch with headers of its own reads it', async () => {
    const h = await harness();
    await h.createApp('acme');
    const preflight = await h.app.request('/app/acme/jwks.json', {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-app-version' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expect(preflight.headers.get('access-control-allow-methods')).toBe('GET,HEAD');
    expect(preflight.headers.get('access-control-allow-headers')).toBe('x-app-version');
    expect(preflight.headers.get('access-control-max-age')).toBe('86400');
    expect(preflight.headers.get('x-content-type-options')).toBe('nosniff');
    // Other methods are still refused, now naming OPTIONS among those it has.
    const put = await h.app.request('/app/acme/jwks.json', { method: 'PUT' });
    expect([put.status, put.headers.get('allow')]).toEqual([405, 'GET, HEAD, OPTIONS']);
  });
});
