/** Milliseconds since the epoch. Injected everywhere so tests control time. */
export type Clock = () => number;

export const systemClock: Clock = () => Date.now();

export const toSeconds = (ms: number): number => Math.floor(ms / 1000);
