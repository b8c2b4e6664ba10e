import { z } from 'zod';
import { looksLikeAppKey } from '../apps/app-key.js';
import { IP_ADDRESS } from './ip-address.js';

const MAX_PERSONAL_BYTES = 4096;
const MAX_TOKEN_CHARS = 8192;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * No unpaired surrogate (`"\ud800"` in JSON text): SQLite stores text as UTF-8, in which one becomes
 * U+FFFD, so a subject would change between its first auth token and the next.
 */
const WELL_FORMED = /^[^\uD800-\uDFFF]*$/u;
const UNPAIRED_SURROGATE = 'must be valid Unicode: no unpaired surrogate';

/** A field that is missing or not `what` is told so in words (zod's: "Invalid input: expected string, received undefined"). */
const missingOr = (what: string) => ({ error: (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : `must be ${what}`) });
/** A string of 1 to `max` characters, each of whose bounds says so in words. */
const string = (max: number) => z.string(missingOr('a string')).min(1, 'must not be empty').max(max, `must be at most ${max} characters`);
const text = (max: number) => string(max).regex(WELL_FORMED, UNPAIRED_SURROGATE);

const AN_IP_ADDRESS = 'an IPv4 or IPv6 address';
const ip = z
  .string(missingOr(AN_IP_ADDRESS))
  .regex(IP_ADDRESS, { error: `must be ${AN_IP_ADDRESS}` })
  .meta({ description: 'an IPv4 or IPv6 address; an IPv6 one may carry a zone (fe80::1%eth0)' }); // for /openapi.json
const sub = text(255);
const useragent = text(1024);
const refreshToken = string(MAX_TOKEN_CHARS);

/**
 * What is wrong with a parsed JSON value, walked level by level without recursion (a 64 KiB body
 * can nest 30,000 deep, past what JSON.stringify's recursion takes): nesting deeper than `maxDepth`,
 * a key or string with an unpaired surrogate, or a number JSON.parse made Infinity (1e400), which
 * JSON.stringify writes as null.
 */
function jsonFault(value: unknown, maxDepth: number): 'too deep' | 'unpaired surrogate' | 'infinite' | undefined {
  let level: unknown[] = [value];
  for (let depth = 0; level.length > 0; depth++) {
    if (depth > maxDepth) return 'too deep';
    const next: unknown[] = [];
    for (const v of level) {
      if (typeof v === 'string' && !WELL_FORMED.test(v)) return 'unpaired surrogate';
      if (typeof v === 'number' && !Number.isFinite(v)) return 'infinite';
      if (typeof v !== 'object' || v === null) continue;
      for (const [key, child] of Object.entries(v)) {
        if (!WELL_FORMED.test(key)) return 'unpaired surrogate';
        next.push(child);
      }
    }
    level = next;
  }
  return undefined;
}

// `personal` is kept as JSON.parse made it (not rebuilt key by key), so a key such as "__proto__"
// stays plain data and never touches a prototype. Each level of nesting takes at least two bytes
// ("[]"), so a value nested deeper than half the byte limit is over it: said without stringifying it.
const personal = z
  .custom<Record<string, unknown>>(isPlainObject, missingOr('a JSON object'))
  .superRefine((v, ctx) => {
    const fault = jsonFault(v, MAX_PERSONAL_BYTES / 2);
    if (fault === 'unpaired surrogate') ctx.addIssue({ code: 'custom', message: UNPAIRED_SURROGATE });
    else if (fault === 'infinite') ctx.addIssue({ code: 'custom', message: 'must not hold a number past what a double holds (such as 1e400): it would be signed as null' });
    else if (fault === 'too deep' || Buffer.byteLength(JSON.stringify(v)) > MAX_PERSONAL_BYTES) ctx.addIssue({ code: 'custom', message: `must be at most ${MAX_PERSONAL_BYTES} bytes of JSON` });
  })
  .meta({ type: 'object', description: `a JSON object of at most ${MAX_PERSONAL_BYTES} bytes as JSON, its numbers within a double's range, copied into every auth token of the session` }); // for /openapi.json

/** A request body: a JSON object of these fields (an array, null or a string is told so). */
const body = <T extends z.core.$ZodLooseShape>(fields: T) => z.object(fields, { error: 'the body must be a JSON object' });

export const issueBody = body({ sub, ip, useragent, personal: personal.optional() });
export const renewBody = body({ refresh_token: refreshToken, ip, useragent });
export const revokeBody = body({ refresh_token: refreshToken });
export const revokeSubjectBody = body({ sub, except_refresh_token: refreshToken.optional() });
export const sessionsBody = body({ sub, refresh_token: refreshToken.optional() });
export const revokeSessionBody = body({ sub, session_id: string(64) });
export const updatePersonalBody = body({ sub, personal: personal.nullable() });
const CALLER_ID = /^[\w-]{1,128}$/;
/** An id a caller chooses (X-Request-Id, an issue's Idempotency-Key): 1–128 letters, digits, `_` and `-` (a UUID fits). */
export const callerId = z.string().regex(CALLER_ID);
/** Whether `value` may be taken as a caller's id: its shape, and not an app key pasted there (ids are logged and stored). */
export const isCallerId = (value: string): boolean => CALLER_ID.test(value) && !looksLikeAppKey(value);
