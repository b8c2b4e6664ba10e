import { z } from 'zod';
import { looksLikeAppKey } from '../apps/app-key.js';

const MAX_PERSONAL_BYTES = 4096;
const MAX_TOKEN_CHARS = 8192;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const ip = z.union([z.ipv4(), z.ipv6()], { error: 'must be an IPv4 or IPv6 address' });
const sub = z.string().min(1).max(255);
const useragent = z.string().min(1).max(1024);
const refreshToken = z.string().min(1).max(MAX_TOKEN_CHARS);

// `personal` is kept as JSON.parse made it (not rebuilt key by key), so a key such as "__proto__"
// stays plain data and never touches a prototype.
const personal = z
  .custom<Record<string, unknown>>(isPlainObject, { error: 'must be a JSON object' })
  .refine((v) => Buffer.byteLength(JSON.stringify(v)) <= MAX_PERSONAL_BYTES, { error: `must be at most ${MAX_PERSONAL_BYTES} bytes of JSON` })
  .meta({ type: 'object', description: `a JSON object of at most ${MAX_PERSONAL_BYTES} bytes as JSON, copied into every auth token of the session` }); // for /openapi.json

export const issueBody = z.object({ sub, ip, useragent, personal: personal.optional() });
export const renewBody = z.object({ refresh_token: refreshToken, ip, useragent });
export const revokeBody = z.object({ refresh_token: refreshToken });
export const revokeSubjectBody = z.object({ sub, except_refresh_token: refreshToken.optional() });
export const sessionsBody = z.object({ sub, refresh_token: refreshToken.optional() });
export const revokeSessionBody = z.object({ sub, session_id: z.string().min(1).max(64) });
export const updatePersonalBody = z.object({ sub, personal: personal.nullable() });
const CALLER_ID = /^[\w-]{1,128}$/;
/** An id a caller chooses (X-Request-Id, an issue's Idempotency-Key): 1–128 letters, digits, `_` and `-` (a UUID fits). */
export const callerId = z.string().regex(CALLER_ID);
/** Whether `value` may be taken as a caller's id: its shape, and not an app key pasted there (ids are logged and stored). */
export const isCallerId = (value: string): boolean => CALLER_ID.test(value) && !looksLikeAppKey(value);
