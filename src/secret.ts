import { hash, timingSafeEqual } from 'node:crypto';

// For high-entropy secrets only (app keys, the metrics token): with 256 random bits there is nothing
// to brute-force, so one SHA-256 is enough to store them, and a slow password hash would only slow
// every request down. (crypto.hash, one-shot, allocates no Hash object for the GC to finalise.)

export function hashSecret(secret: string): string {
  return hash('sha256', secret, 'hex');
}

/** The credentials of `Authorization: Bearer <credentials>`: the scheme in any case (RFC 9110 §11.1), any spacing. */
export function bearerCredentials(header: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec((header ?? '').trim())?.[1];
}

/** Constant-time comparison of a presented secret with a stored hash (both sides 32-byte digests). */
export function secretMatches(presented: string, storedHash: string): boolean {
  const a = hash('sha256', presented, 'buffer');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
