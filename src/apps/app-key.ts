import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

// App keys carry 256 random bits, so a single SHA-256 is enough to store them: there is nothing to
// brute-force, and a slow password hash would only slow every request down.
const PREFIX = 'tmk_';

/** A new app key: a recognisable prefix and 32 random bytes. */
export function generateAppKey(): string {
  return PREFIX + randomBytes(32).toString('base64url');
}

export function hashAppKey(appKey: string): string {
  return createHash('sha256').update(appKey).digest('hex');
}

/** Constant-time comparison of a presented key with a stored hash (both sides are 32-byte digests). */
export function appKeyMatches(presented: string, storedHash: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The app key from `Authorization: <key>` or `Authorization: Bearer <key>`. */
export function appKeyFromAuthorization(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const value = header.trim();
  const match = /^Bearer\s+(\S+)$/i.exec(value);
  return match ? match[1] : value;
}
