import { randomBytes } from 'node:crypto';
import { bearerCredentials } from '../secret.js';

// Stored and compared with hashSecret / secretMatches (src/secret.ts).
const PREFIX = 'tmk_';

/** Whether a string has an app key's prefix: such a value is never logged, whatever header brought it. */
export const looksLikeAppKey = (value: string) => value.startsWith(PREFIX);

/** A new app key: a recognisable prefix and 32 random bytes. */
export function generateAppKey(): string {
  return PREFIX + randomBytes(32).toString('base64url');
}

/** The app key from `Authorization: <key>` or `Authorization: Bearer <key>`. */
export function appKeyFromAuthorization(header: string | undefined): string | undefined {
  if (!header) return undefined;
  return bearerCredentials(header) ?? header.trim();
}
