/** Milliseconds since the epoch. Injected everywhere so tests control time. */
export type Clock = () => number;

export const systemClock: Clock = () => Date.now();

export const toSeconds = (ms: number): number => Math.floor(ms / 1000);

/** A time (ms) as printed and logged: ISO 8601 in UTC, or null for none. */
export const toIso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
