import type { Logger } from '../log.js';
import type { JwksCaching } from '../storage/repository.js';

// A key is promoted only once every JWKS a verifier may still hold from before the key was published
// has run out (contract §5). A server start that lowers JWKS_MAX_AGE_SECONDS does not shorten the
// caches already made under the longer one, so that one is kept until they may have run out.

const ms = (seconds: number) => seconds * 1000;

/** Whether the caches under the former, longer max-age may still hold a JWKS at `now`. */
const formerInForce = (former: JwksCaching['former'], now: number): former is NonNullable<JwksCaching['former']> =>
  former !== null && former.loweredAt + ms(former.maxAgeSeconds) > now;

/**
 * What a server start with `maxAgeSeconds` at `now` records after `recorded`: a former, longer max-age
 * while caches made under it may live — the one this start lowers, as of now, or one an earlier start
 * lowered, as of then. Both at once are kept as one that covers them: the longer age, as of now.
 */
export function cachingAfterStart(recorded: JwksCaching | null, maxAgeSeconds: number, now: number): JwksCaching {
  const formers: Array<NonNullable<JwksCaching['former']>> = [];
  if (recorded && recorded.maxAgeSeconds > maxAgeSeconds) formers.push({ maxAgeSeconds: recorded.maxAgeSeconds, loweredAt: now });
  if (recorded && formerInForce(recorded.former, now) && recorded.former.maxAgeSeconds > maxAgeSeconds) formers.push(recorded.former);
  if (formers.length === 0) return { maxAgeSeconds, former: null };
  return { maxAgeSeconds, former: { maxAgeSeconds: Math.max(...formers.map((f) => f.maxAgeSeconds)), loweredAt: Math.max(...formers.map((f) => f.loweredAt)) } };
}

/** At a server's start: says that a former, longer max-age is still waited for, and until when at most. */
export function warnIfLowered(caching: JwksCaching, logger: Logger, now: number): void {
  const { former } = caching;
  if (!formerInForce(former, now)) return;
  const until = new Date(former.loweredAt + ms(former.maxAgeSeconds)).toISOString();
  logger.warn(
    { jwks_max_age_seconds: caching.maxAgeSeconds, former_jwks_max_age_seconds: former.maxAgeSeconds, until },
    'JWKS_MAX_AGE_SECONDS was lowered: verifiers may hold a JWKS cached under the former one, so scheduled rotations wait for it',
  );
}

/** When a key published at `publishedAt` is in every JWKS a verifier may hold: no cache made before then is left. */
export function knownToVerifiersAt(caching: JwksCaching, publishedAt: number): number {
  const { former } = caching;
  const underFormer = former === null ? 0 : Math.min(publishedAt, former.loweredAt) + ms(former.maxAgeSeconds);
  return Math.max(publishedAt + ms(caching.maxAgeSeconds), underFormer);
}

/** The latest publication time of a key that is in every JWKS a verifier may hold at `now` (knownToVerifiersAt, inverted). */
export function publishedKnownBy(caching: JwksCaching, now: number): number {
  return now - ms(formerInForce(caching.former, now) ? caching.former.maxAgeSeconds : caching.maxAgeSeconds);
}
