import { randomFillSync } from 'node:crypto';
import { ulid } from 'ulid';

// ulid's default PRNG asks the system for one random byte per character, 16 calls per id. This
// draws the same cryptographic bytes from a pool refilled 4 KiB at a time.
const pool = Buffer.alloc(4096);
let offset = pool.length;

function randomFraction(): number {
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  return pool[offset++]! / 256;
}

/** A ULID for time `now` (ms): sorts by time, 80 random bits. */
export const newUlid = (now: number): string => ulid(now, randomFraction);
