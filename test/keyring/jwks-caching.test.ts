import { describe, expect, it } from 'vitest';
import { cachingAfterStart, knownToVerifiersAt, publishedKnownBy } from '../../src/keyring/jwks-caching.js';

const T0 = Date.parse('2026-06-01T12:00:00Z');
const s = (seconds: number) => seconds * 1000;

describe('JWKS caching across server starts', () => {
  it('a start that lowers the max-age keeps the former one, as of that start; one that raises it or keeps it needs none', () => {
    expect(cachingAfterStart(null, 300, T0)).toEqual({ maxAgeSeconds: 300, former: null });
    expect(cachingAfterStart({ maxAgeSeconds: 300, former: null }, 3600, T0)).toEqual({ maxAgeSeconds: 3600, former: null });
    expect(cachingAfterStart({ maxAgeSeconds: 300, former: null }, 300, T0)).toEqual({ maxAgeSeconds: 300, former: null });
    expect(cachingAfterStart({ maxAgeSeconds: 3600, former: null }, 300, T0)).toEqual({ maxAgeSeconds: 300, former: { maxAgeSeconds: 3600, loweredAt: T0 } });
  });

  it('a restart while caches under the former max-age may live keeps it as it was; after they have run out, forgets it', () => {
    const lowered = { maxAgeSeconds: 300, former: { maxAgeSeconds: 3600, loweredAt: T0 } };
    expect(cachingAfterStart(lowered, 300, T0 + s(3599))).toEqual(lowered);
    expect(cachingAfterStart(lowered, 60, T0 + s(100))).toEqual({ maxAgeSeconds: 60, former: { maxAgeSeconds: 3600, loweredAt: T0 + s(100) } });
    expect(cachingAfterStart(lowered, 3600, T0 + s(100))).toEqual({ maxAgeSeconds: 3600, former: null });
    expect(cachingAfterStart(lowered, 300, T0 + s(3600))).toEqual({ maxAgeSeconds: 300, former: null });
    // Lowered twice: 86,400 → 3,600 → 300. The day-long caches are still the longest.
    const twice = cachingAfterStart(cachingAfterStart({ maxAgeSeconds: 86_400, former: null }, 3600, T0), 300, T0 + s(60));
    expect(twice).toEqual({ maxAgeSeconds: 300, former: { maxAgeSeconds: 86_400, loweredAt: T0 + s(60) } });
  });

  it('a key is known to every verifier one max-age after it was published, or once caches from before a lowering have run out', () => {
    const plain = { maxAgeSeconds: 300, former: null };
    expect(knownToVerifiersAt(plain, T0)).toBe(T0 + s(300));
    const lowered = { maxAgeSeconds: 300, former: { maxAgeSeconds: 3600, loweredAt: T0 } };
    expect(knownToVerifiersAt(lowered, T0 - s(7200))).toBe(T0 - s(3600)); // published long before: its own hour
    expect(knownToVerifiersAt(lowered, T0 - s(60))).toBe(T0 + s(3540));
    expect(knownToVerifiersAt(lowered, T0 + s(60))).toBe(T0 + s(3600)); // after: the caches from before the lowering
    expect(knownToVerifiersAt(lowered, T0 + s(3400))).toBe(T0 + s(3700));
  });

  it('publishedKnownBy is the latest publication time knownToVerifiersAt allows', () => {
    const cachings = [
      { maxAgeSeconds: 300, former: null },
      { maxAgeSeconds: 300, former: { maxAgeSeconds: 3600, loweredAt: T0 } },
      { maxAgeSeconds: 1, former: { maxAgeSeconds: 86_400, loweredAt: T0 + s(500) } },
    ];
    for (const caching of cachings) {
      for (let now = T0 - s(7200); now <= T0 + s(90_000); now += s(97)) {
        const latest = publishedKnownBy(caching, now);
        expect(knownToVerifiersAt(caching, latest)).toBeLessThanOrEqual(now);
        expect(knownToVerifiersAt(caching, latest + 1)).toBeGreaterThan(now);
      }
    }
  });
});
