import { sql } from 'drizzle-orm';
import { blob, index, integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

// Times named *_at are milliseconds since the epoch; iat/nbf/exp are JWT seconds.

export const apps = sqliteTable('apps', {
  appId: text('app_id').primaryKey(),
  appKeyHash: text('app_key_hash').notNull(),
  // Set by `app rotate-secret --grace`: the old key keeps working until then.
  previousAppKeyHash: text('previous_app_key_hash'),
  previousAppKeyExpiresAt: integer('previous_app_key_expires_at'),
  audience: text('audience').notNull(),
  accessTtlSeconds: integer('access_ttl_seconds').notNull(),
  refreshTtlSeconds: integer('refresh_ttl_seconds').notNull(),
  refreshNbfSeconds: integer('refresh_nbf_seconds').notNull(),
  sessionTtlSeconds: integer('session_ttl_seconds').notNull(),
  reuseGraceSeconds: integer('reuse_grace_seconds').notNull(),
  rotateEverySeconds: integer('rotate_every_seconds').notNull(),
  // Live sessions a subject may hold at once; an issue beyond it ends the oldest. 0: no limit.
  maxSessions: integer('max_sessions').notNull().default(0),
  disabled: integer('disabled', { mode: 'boolean' }).notNull().default(false),
  createdAt: integer('created_at').notNull(),
  updatedAt: integer('updated_at').notNull(),
});

export const signingKeys = sqliteTable(
  'signing_keys',
  {
    kid: text('kid').primaryKey(),
    appId: text('app_id')
      .notNull()
      .references(() => apps.appId),
    state: text('state', { enum: ['next', 'current', 'retired', 'revoked'] }).notNull(),
    // AES-256-GCM envelope under the master key; never the clear PKCS#8. Null once pruned.
    sealedPrivateKey: text('sealed_private_key'),
    publicKeyPem: text('public_key_pem').notNull(),
    createdAt: integer('created_at').notNull(),
    activatedAt: integer('activated_at'),
    retiredAt: integer('retired_at'),
    revokedAt: integer('revoked_at'),
    // Raised when the app's token lifetimes change: a token this key signed under the settings before
    // may live until then, so the key verifies at least that long, whatever the new settings say.
    verifiesAtLeastUntil: integer('verifies_at_least_until'),
    // Set when the key left the keyring for good: private key destroyed, this row kept as its record.
    prunedAt: integer('pruned_at'),
  },
  (t) => [
    index('signing_keys_app_idx').on(t.appId),
    // The database itself refuses a second signing key or a second pre-published key.
    uniqueIndex('signing_keys_one_current').on(t.appId).where(sql`state = 'current'`),
    uniqueIndex('signing_keys_one_next').on(t.appId).where(sql`state = 'next'`),
  ],
);

export const sessions = sqliteTable(
  'sessions',
  {
    sessionId: text('session_id').primaryKey(),
    appId: text('app_id')
      .notNull()
      .references(() => apps.appId),
    sub: text('sub').notNull(),
    personal: text('personal'), // JSON text, copied into every auth token of the session
    createdAt: integer('created_at').notNull(),
    expiresAt: integer('expires_at').notNull(), // absolute end: created + session-ttl
    revokedAt: integer('revoked_at'),
    revokeReason: text('revoke_reason'),
    // The client that logged in (its first refresh token's), for `session list`; null for sessions
    // started before migration 0009. Never read by a renew (sqlite-repository's hot path leaves them out).
    ip: text('ip'),
    useragent: text('useragent'),
    // The Idempotency-Key of the issue that started it, if it sent one: a retry of that issue (its
    // answer lost) revokes this session, which nobody holds, as it starts its own.
    issueKey: text('issue_key'),
  },
  // By app and subject, in the order they started: "your devices" and --max-sessions read the newest
  // few of a subject without sorting all of them (migration 0012; before, on app and subject only).
  (t) => [index('sessions_app_sub_created_idx').on(t.appId, t.sub, t.createdAt), index('sessions_expires_idx').on(t.expiresAt)],
);

export const refreshTokens = sqliteTable(
  'refresh_tokens',
  {
    jid: text('jid').primaryKey(),
    // No index and no foreign key on purpose: a token reaches its session by the session's primary
    // key, and nothing looks tokens up by session. An index on it would cost every renew a page of its
    // own in every commit (the renewing session's leaf, shared with no other renew of the batch), and
    // a foreign key cannot be checked on delete without one. Pruning needs neither (sqlite-repository).
    sessionId: text('session_id').notNull(),
    // UNIQUE: a parent has at most one child, so a session can never fork. A token is used exactly
    // when it has a child: storing the child is the single-use decision (sqlite-repository.ts), and
    // nothing is written to the parent's row.
    parentJid: text('parent_jid').unique(),
    iat: integer('iat').notNull(),
    nbf: integer('nbf').notNull(),
    exp: integer('exp').notNull(),
    ip: text('ip').notNull(),
    useragent: text('useragent').notNull(),
    // When it was issued; for a child, the moment its parent was used, which the reuse grace counts from.
    issuedAt: integer('issued_at').notNull(),
    // SHA-256 of the token string as first issued: a token presented byte for byte as stored is
    // authentic without a signature check (the key is still checked). Never the token itself.
    tokenSha256: blob('token_sha256', { mode: 'buffer' }),
  },
  (t) => [index('refresh_tokens_exp_idx').on(t.exp)],
);

// One row whose version goes up (by the triggers of migrations/0003) whenever apps or signing_keys change,
// from any process: a server caches apps and keys and re-reads them only when it moves.
export const catalogVersion = sqliteTable('catalog_version', {
  id: integer('id').primaryKey(),
  version: integer('version').notNull(),
});

// The ids of the master keys the server last started with (never a key): the CLI seals a first app's
// keys under one of them, not under a stray new key file the server could not open.
export const serverMasterKeys = sqliteTable('server_master_keys', {
  id: text('id').primaryKey(),
  recordedAt: integer('recorded_at').notNull(),
});

// One row: the JWKS max-age the server last started with. The CLI follows it (the warning of
// `key rotate`, the lead of `key rotate --due`) rather than whatever its own shell's environment says.
// A start that lowered it keeps the longer one, and when, while caches made under it may live.
export const serverSettings = sqliteTable('server_settings', {
  id: integer('id').primaryKey(),
  jwksMaxAgeSeconds: integer('jwks_max_age_seconds').notNull(),
  recordedAt: integer('recorded_at').notNull(),
  formerJwksMaxAgeSeconds: integer('former_jwks_max_age_seconds'),
  jwksMaxAgeLoweredAt: integer('jwks_max_age_lowered_at'),
});

// Admin actions and security events. Never a secret: no token, key or app key.
export const auditEvents = sqliteTable(
  'audit_events',
  {
    id: text('id').primaryKey(), // ULID, so ids sort by time
    at: integer('at').notNull(),
    actor: text('actor', { enum: ['cli', 'server'] }).notNull(),
    event: text('event').notNull(),
    appId: text('app_id'),
    sub: text('sub'),
    sessionId: text('session_id'),
    kid: text('kid'),
    clientAddress: text('client_address'),
    detail: text('detail'), // JSON text
  },
  (t) => [index('audit_events_at_idx').on(t.at), index('audit_events_app_idx').on(t.appId, t.at)],
);
