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
});
