import { z } from 'zod';
import type { AppRecord, AppSettings } from '../storage/repository.js';
import { whole, wholeNumberFrom } from '../whole-number.js';
import { APP_ID, APP_ID_RULE } from './app-id.js';

export const appIdSchema = z.string().regex(APP_ID, `must be ${APP_ID_RULE}`);

/**
 * The longest a setting in seconds may be: ten years, longer than any of them has a use for. Until
 * this bound, lifetimes near 2^53 s were taken, and the times they led to were past what a Date can
 * print: `POST …/sessions` answered 500 and `session list` failed.
 */
export const MAX_SETTING_SECONDS = 10 * 365 * 86_400;

const seconds = (min: number) =>
  wholeNumberFrom(whole(' of seconds', MAX_SETTING_SECONDS, `must be at most ${MAX_SETTING_SECONDS} seconds (10 years)`).min(min, `must be at least ${min} second${min === 1 ? '' : 's'}`));

/** The settings an admin may set; each is optional here, DEFAULT_APP_SETTINGS fills the rest. */
export const appSettingsPatchSchema = z
  .object({
    audience: z.string().min(1, 'must not be empty').max(255, 'must be at most 255 characters'),
    accessTtlSeconds: seconds(1),
    refreshTtlSeconds: seconds(1),
    refreshNbfSeconds: seconds(0),
    sessionTtlSeconds: seconds(1),
    reuseGraceSeconds: seconds(0),
    rotateEverySeconds: seconds(0),
    maxSessions: wholeNumberFrom(whole().min(0)),
  })
  .partial()
  .strict();

/** Contract §2 defaults, in seconds; and no limit on sessions per subject. */
export const DEFAULT_APP_SETTINGS: AppSettings = Object.freeze({
  audience: 'web-app',
  accessTtlSeconds: 3600,
  refreshTtlSeconds: 10_800,
  refreshNbfSeconds: 60,
  sessionTtlSeconds: 2_592_000,
  reuseGraceSeconds: 10,
  rotateEverySeconds: 2_592_000,
  maxSessions: 0,
});

/** Settings under which refresh tokens could never renew, or not when they are needed, are refused. */
export function checkSettings(s: AppSettings): string | undefined {
  if (s.refreshNbfSeconds >= s.refreshTtlSeconds) return 'refresh-nbf must be shorter than refresh-ttl';
  // A refresh token expires at the session's end at the latest: a first one valid only from after it never renews.
  if (s.refreshNbfSeconds >= s.sessionTtlSeconds) return 'refresh-nbf must be shorter than session-ttl, or no session is ever renewed';
  // A client renews when its auth token expires: before the refresh token's nbf it would get a 401,
  // which a client can only take as "logged out".
  if (s.refreshNbfSeconds > s.accessTtlSeconds) return 'refresh-nbf must not be longer than access-ttl, or a client renewing when its auth token expires is refused';
  return undefined;
}

/** A retried or racing renew arrives within seconds; Amazon Cognito caps its own rotation grace (RetryGracePeriodSeconds) at this. */
const LONGEST_LIKELY_REUSE_GRACE_SECONDS = 60;

/**
 * Settings that are legal but likely a mistake, as sentences for the CLI to warn with (and not refused):
 * - a refresh token that expires with its auth token or before it is of no use to a client that renews
 *   when the auth token expires, as tokenmint/hono does: its user is logged out every access-ttl (a
 *   client that renews ahead of time keeps its session);
 * - a scheduled rotation waits until the next key has been published for one JWKS cache lifetime
 *   (`jwksMaxAgeSeconds`, the server's), so a shorter rotate-every is not what happens;
 * - a reuse grace is a window in which a copied refresh token works once more and its reuse goes
 *   unnoticed (RFC 9700 §4.14.2): it is for retries and racing tabs, which take seconds, not minutes.
 */
export function settingsWarnings(s: AppSettings, jwksMaxAgeSeconds: number): string[] {
  const warnings: string[] = [];
  if (s.refreshTtlSeconds <= s.accessTtlSeconds) {
    warnings.push(
      `refresh-ttl (${s.refreshTtlSeconds} s) is not longer than access-ttl (${s.accessTtlSeconds} s): a client that renews when its auth token expires ` +
        '(as tokenmint/hono does) finds its refresh token expired too, and its user is logged out every access-ttl',
    );
  }
  if (s.rotateEverySeconds > 0 && s.rotateEverySeconds < jwksMaxAgeSeconds) {
    warnings.push(
      `rotate-every (${s.rotateEverySeconds} s) is shorter than the JWKS cache lifetime (${jwksMaxAgeSeconds} s, the server's JWKS_MAX_AGE_SECONDS): ` +
        `a next key is promoted only once verifiers can have it, so keys rotate every ${jwksMaxAgeSeconds} s`,
    );
  }
  if (s.reuseGraceSeconds > LONGEST_LIKELY_REUSE_GRACE_SECONDS) {
    warnings.push(
      `reuse-grace (${s.reuseGraceSeconds} s) is longer than a minute: for that long after a refresh token is used, whoever holds a copy of it ` +
        "gets the session's new pair, and the reuse is not detected",
    );
  }
  return warnings;
}

/** What `app show`/`list` print: the settings, never an app key or its hash. */
export function publicApp(app: AppRecord) {
  return {
    app_id: app.appId,
    audience: app.audience,
    access_ttl: app.accessTtlSeconds,
    refresh_ttl: app.refreshTtlSeconds,
    refresh_nbf: app.refreshNbfSeconds,
    session_ttl: app.sessionTtlSeconds,
    reuse_grace: app.reuseGraceSeconds,
    rotate_every: app.rotateEverySeconds,
    max_sessions: app.maxSessions,
    disabled: app.disabled,
    previous_app_key_valid_until: app.previousAppKeyExpiresAt === null ? null : new Date(app.previousAppKeyExpiresAt).toISOString(),
    created_at: new Date(app.createdAt).toISOString(),
    updated_at: new Date(app.updatedAt).toISOString(),
  };
}
