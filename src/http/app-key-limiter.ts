import type { Clock } from '../clock.js';

/** Longer than any textual IPv6 address (45), with room for a zone. */
const MAX_ADDRESS_CHARS = 64;

export type AppKeyLimiter = ReturnType<typeof createAppKeyLimiter>;

interface Entry {
  windowStart: number;
  failures: number;
  blockedUntil: number;
}

/**
 * Counts wrong app keys per (app, client address) in fixed windows. After `limit` failures within
 * `windowSeconds`, that pair is blocked for `windowSeconds` — even with the right key — while other
 * apps and addresses go on untouched. At most `maxClients` pairs are remembered: the oldest is
 * forgotten first, so memory stays bounded whatever an attacker sends.
 */
export function createAppKeyLimiter({ limit, windowSeconds, maxClients, clock }: { limit: number; windowSeconds: number; maxClients: number; clock: Clock }) {
  const entries = new Map<string, Entry>();
  const windowMs = windowSeconds * 1000;
  // An address longer than any IP can only come from a forged proxy header: cut, it still counts.
  const keyOf = (appId: string, client: string) => `${appId}\u0000${client.slice(0, MAX_ADDRESS_CHARS)}`;

  return {
    /** Seconds until the pair may try again, or 0 when it is not blocked. */
    retryAfterSeconds(appId: string, client: string): number {
      const entry = entries.get(keyOf(appId, client));
      const wait = entry ? entry.blockedUntil - clock() : 0;
      return wait > 0 ? Math.ceil(wait / 1000) : 0;
    },

    /** Counts one wrong key; true when this failure starts a block. */
    recordFailure(appId: string, client: string): boolean {
      const key = keyOf(appId, client);
      const now = clock();
      let entry = entries.get(key);
      if (!entry || now - entry.windowStart >= windowMs) {
        entries.delete(key); // re-insert as the newest
        entry = { windowStart: now, failures: 0, blockedUntil: entry?.blockedUntil ?? 0 };
        entries.set(key, entry);
        if (entries.size > maxClients) entries.delete(entries.keys().next().value!);
      }
      entry.failures += 1;
      if (entry.failures < limit) return false;
      const started = entry.blockedUntil <= now;
      entry.blockedUntil = now + windowMs;
      return started;
    },

    get size(): number {
      return entries.size;
    },
  };
}
