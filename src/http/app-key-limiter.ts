import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { clientNetwork } from './client-address.js';

/** Longer than any textual IPv6 address (45), with room for a zone. */
const MAX_ADDRESS_CHARS = 64;

/**
 * Blocks of one app recorded in the audit log per window by one process, at most: each block of a
 * new address is otherwise a row, kept until an admin prunes the log, and an attacker holding many
 * addresses (an IPv6 /64 has 2^64) could grow it without end. Blocks past it are enforced all the same.
 */
export const RECORDED_BLOCKS_PER_WINDOW = 100;

export type AppKeyLimiter = ReturnType<typeof createAppKeyLimiter>;

/** The counts of a limiter that still matter, oldest first: what a worker that starts takes over (AppKeyLimiter.load). */
export type AppKeyCounts = Array<[key: string, entry: Entry]>;

interface Entry {
  windowStart: number;
  failures: number;
  blockedUntil: number;
}

/** The limiter's settings from the environment: the same in every process of a server. */
export const appKeyLimits = (config: Config) => ({
  limit: config.appKeyFailureLimit,
  windowSeconds: config.appKeyFailureWindowSeconds,
  maxClients: config.appKeyLimiterMaxClients,
  ipv6PrefixBits: config.appKeyFailureIpv6Prefix,
});

/**
 * Counts wrong app keys per (app, client: an address, or an IPv6 network if so set) in fixed windows.
 * After `limit` failures within `windowSeconds`, that pair is blocked for `windowSeconds` — even with
 * the right key — while other apps and clients go on untouched. At most `maxClients` pairs are
 * remembered: the oldest is forgotten first, so memory stays bounded whatever an attacker sends.
 * Each server process has its own; the workers of a cluster `share` each failure they count, and
 * count those of the others (`recordSharedFailure`), so that all block at the same count. The
 * cluster primary counts them all too, and a worker that starts takes its counts over (`load`).
 */
export function createAppKeyLimiter({
  limit,
  windowSeconds,
  maxClients,
  ipv6PrefixBits = 128,
  clock,
  share,
}: {
  limit: number;
  windowSeconds: number;
  maxClients: number;
  /** 128: each IPv6 address counts apart; less: the network of that prefix counts as one client. */
  ipv6PrefixBits?: number;
  clock: Clock;
  share?: (appId: string, client: string) => void;
}) {
  const entries = new Map<string, Entry>();
  const windowMs = windowSeconds * 1000;
  const recordedBlocks = new Map<string, { windowStart: number; count: number }>();
  // An address longer than any IP can only come from a forged proxy header: cut, it still counts.
  const keyOf = (appId: string, client: string) => `${appId}\u0000${clientNetwork(client.slice(0, MAX_ADDRESS_CHARS), ipv6PrefixBits)}`;

  /** Stores `entry` as the newest of the pairs remembered, forgetting the oldest past maxClients. */
  function remember(key: string, entry: Entry): Entry {
    entries.delete(key); // re-insert as the newest
    entries.set(key, entry);
    if (entries.size > maxClients) entries.delete(entries.keys().next().value!);
    return entry;
  }

  /** Counts one failure of the pair; true when it starts a block. */
  function count(appId: string, client: string): boolean {
    const key = keyOf(appId, client);
    const now = clock();
    let entry = entries.get(key);
    if (!entry || now - entry.windowStart >= windowMs) entry = remember(key, { windowStart: now, failures: 0, blockedUntil: entry?.blockedUntil ?? 0 });
    entry.failures += 1;
    if (entry.failures < limit) return false;
    const started = entry.blockedUntil <= now;
    entry.blockedUntil = now + windowMs;
    return started;
  }

  return {
    /** Seconds until the pair may try again, or 0 when it is not blocked. */
    retryAfterSeconds(appId: string, client: string): number {
      const entry = entries.get(keyOf(appId, client));
      const wait = entry ? entry.blockedUntil - clock() : 0;
      return wait > 0 ? Math.ceil(wait / 1000) : 0;
    },

    /** Counts one wrong key (and shares it); true when this failure starts a block. */
    recordFailure(appId: string, client: string): boolean {
      share?.(appId, client);
      return count(appId, client);
    },

    /**
     * Counts a wrong key another worker counted and shared; true when it starts a block here. The
     * workers' counts meet only through these messages, so a block may start in every worker from a
     * failure of another: each records the block it starts (recordAppKeyBlock, which keeps one), lest none do.
     */
    recordSharedFailure(appId: string, client: string): boolean {
      return count(appId, client);
    },

    /**
     * Numbers a block that has just started on `appId`, an app that exists (so the map holds one entry
     * per app at most): 1 for its first in the current window, and so on.
     */
    blockNumber(appId: string): number {
      const now = clock();
      let window = recordedBlocks.get(appId);
      if (!window || now - window.windowStart >= windowMs) recordedBlocks.set(appId, (window = { windowStart: now, count: 0 }));
      return ++window.count;
    },

    /** Since when (ms) a block that starts now may already have been recorded: a block lasts one window, and the next can start only after it. */
    blockStartedAfter(): number {
      return clock() - windowMs;
    },

    /** The counts whose window or block has not ended, oldest first. */
    counts(): AppKeyCounts {
      const now = clock();
      return [...entries].filter(([, entry]) => now - entry.windowStart < windowMs || entry.blockedUntil > now);
    },

    /** Takes over `counts` of a limiter with the same settings (the cluster primary's), in place of its own for those pairs. */
    load(counts: AppKeyCounts): void {
      for (const [key, entry] of counts) remember(key, { ...entry });
    },

    get size(): number {
      return entries.size;
    },
  };
}
