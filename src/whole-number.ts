import { z } from 'zod';

/**
 * A whole number as typed on a command line or in the environment, digits only, else NaN. Number()
 * takes '' and ' ' for 0 (until this version an empty `--rotate-every "$EVERY"` stopped rotations,
 * an empty `--grace` ended the old app key at once, and an empty PORT listened on a random port),
 * '1e3' for 1000 and '0x10' for 16.
 */
export const wholeNumber = (value: unknown): number => (typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN);

/**
 * A zod number of whole `unit`s, at most `max`, said so when the text is not one (wrap it with
 * `wholeNumberFrom`). The bound is checked first and alone: zod's `.int()` refuses an integer past
 * 2^53 as "not a whole number" too, so `--access-ttl 99999999999999999` was told both.
 */
export const whole = (unit = '', max = Number.MAX_SAFE_INTEGER, maxMessage = `must be at most ${max}`) =>
  z
    .number({ error: (issue) => (issue.code === 'invalid_type' ? `must be a whole number${unit}` : undefined) })
    .max(max, { error: maxMessage, abort: true })
    .int(`must be a whole number${unit}`);

/** `schema` applied to the text read as wholeNumber reads it. */
export const wholeNumberFrom = <T extends z.ZodType<number>>(schema: T) => z.preprocess(wholeNumber, schema);
