// The storage boundary. No SQL here: the services see only these types and methods, so another
// database (PostgreSQL next) implements this interface and passes the same contract tests
// (test/storage/repository-contract.ts). Times named *At are milliseconds since the epoch;
// iat/nbf/exp are JWT seconds.

export interface AppSettings {
  audience: string;
  accessTtlSeconds: number;
  refreshTtlSeconds: number;
  refreshNbfSeconds: number;
  sessionTtlSeconds: number;
  reuseGraceSeconds: number;
  rotateEverySeconds: number;
  /** Live sessions one subject may hold at once (0: no limit): a new one ends the oldest beyond it. */
  maxSessions: number;
}

export interface AppRecord extends AppSettings {
  appId: string;
  appKeyHash: string;
  previousAppKeyHash: string | null;
  previousAppKeyExpiresAt: number | null;
  disabled: boolean;
  createdAt: number;
  updatedAt: number;
}

export type AppPatch = Partial<
  AppSettings & Pick<AppRecord, 'disabled' | 'appKeyHash' | 'previousAppKeyHash' | 'previousAppKeyExpiresAt'>
>;

export type KeyState = 'next' | 'current' | 'retired' | 'revoked';

export interface SigningKeyRecord {
  kid: string;
  appId: string;
  state: KeyState;
  /** The sealed envelope; null once the key is pruned (its row stays as the key's record). */
  sealedPrivateKey: string | null;
  publicKeyPem: string;
  createdAt: number;
  activatedAt: number | null;
  retiredAt: number | null;
  revokedAt: number | null;
  /**
   * Set when the app's token lifetimes were changed: a token this key signed under the settings
   * before may live until then, so the key verifies at least that long after it retires.
   */
  verifiesAtLeastUntil: number | null;
  prunedAt: number | null;
}

/** How long verifiers may hold an app's JWKS, as a server start recorded it. */
export interface JwksCaching {
  /** The server's JWKS_MAX_AGE_SECONDS. */
  maxAgeSeconds: number;
  /** A longer max-age that a server start lowered at `loweredAt`: a JWKS fetched before then may be cached that long. */
  former: { maxAgeSeconds: number; loweredAt: number } | null;
}

/** Conditions for a scheduled rotation, checked inside the rotation's own transaction. */
export interface RotationDue {
  /** Rotate only if the current key was activated at or before this time. */
  currentActivatedAtOrBefore: number;
  /** ...and the next key has been published since at or before this time. */
  nextCreatedAtOrBefore: number;
}

export interface SessionRecord {
  sessionId: string;
  appId: string;
  sub: string;
  /** JSON text of the `personal` object, or null. */
  personal: string | null;
  createdAt: number;
  /** Absolute end of the session, however often it is renewed. */
  expiresAt: number;
  revokedAt: number | null;
  revokeReason: string | null;
}

export interface RefreshTokenRecord {
  jid: string;
  sessionId: string;
  parentJid: string | null;
  iat: number;
  nbf: number;
  exp: number;
  /** Of the request that obtained this token (copied into the auth token issued with it). */
  ip: string;
  useragent: string;
  /** When it was issued (ms); for a child, the moment its parent was used. */
  issuedAt: number;
  /**
   * SHA-256 of the token string as first signed, or null. A presented token with this digest is one
   * the server issued byte for byte, so its signature need not be checked again (its key still is).
   */
  tokenSha256: Uint8Array | null;
}

/** A stored refresh token as read: with its session, and its child (null while it is unused). */
export interface RefreshToken {
  token: RefreshTokenRecord;
  session: SessionRecord;
  child: RefreshTokenRecord | null;
}

/** Which sessions of an app: one subject's, one session, or (neither named) all; `exceptSessionId` is spared. */
export interface SessionFilter {
  sub?: string;
  sessionId?: string;
  exceptSessionId?: string;
}

/**
 * Why a session ended early; `retried`: an issue sent again with its Idempotency-Key replaced it;
 * `session-limit`: a newer session of its subject took its place (the app's max-sessions).
 */
export type RevokeReason = 'reuse' | 'client' | 'admin' | 'admin-all' | 'retried' | 'session-limit';

/** A session as `session list` shows it: with the client that logged in (null for sessions older than that record). */
export interface SessionListing extends SessionRecord {
  ip: string | null;
  useragent: string | null;
}

/** An admin action or security event. Never holds a secret. */
export interface AuditEvent {
  id: string;
  at: number;
  actor: 'cli' | 'server';
  event: string;
  appId: string | null;
  sub: string | null;
  sessionId: string | null;
  kid: string | null;
  clientAddress: string | null;
  /** JSON text of event-specific details, or null. */
  detail: string | null;
}

/**
 * Durability: once a write resolves it survives a crash of the process. The admin writes and the
 * revocations (`createApp`, `updateApp`, `rotateKeys`, `revokeKey`, `pruneKeys`, `resealKeys`,
 * `revokeSession`, `revokeSessions`) also survive a power cut; `createSession`,
 * `consumeRefreshToken`, `updatePersonal`, `pruneExpired` and `recordAudit` may lose their last writes to one.
 */
export interface Repository {
  /** Registers an app with its first signing keys, atomically. Throws `conflict` if app_id is taken. */
  createApp(app: AppRecord, keys: SigningKeyRecord[]): Promise<void>;
  findApp(appId: string): Promise<AppRecord | undefined>;
  /**
   * A number that changes whenever an app or a signing key changes, by any process sharing the store.
   * While it stays the same, `findApp` and `listKeys` answer the same, so callers may cache them.
   */
  catalogVersion(): Promise<number>;
  listApps(): Promise<AppRecord[]>;
  /**
   * Applies the patch — or the patch a function makes of the app as it is inside the transaction, for a
   * change that depends on it (a rotated app key keeps the key it replaces) — and resolves to the
   * updated app, or undefined for an unknown app. With
   * `tokenLifetimeMs` (how long a token signed under given settings can live), in the same
   * transaction: every key that may have signed under the settings before (neither revoked nor
   * pruned) gets `verifiesAtLeastUntil` raised to its `retiredAt` (or `now`) plus that lifetime under
   * the settings before the patch.
   */
  updateApp(appId: string, patch: AppPatch | ((before: AppRecord) => AppPatch), now: number, tokenLifetimeMs?: (before: AppSettings) => number): Promise<AppRecord | undefined>;

  /**
   * Deletes a disabled app that has no session left, with its signing keys (private keys and all),
   * atomically. Resolves to `deleted`, or to why not: `unknown`, `enabled`, or how many sessions are
   * still stored.
   */
  deleteApp(appId: string): Promise<'deleted' | 'unknown' | 'enabled' | { sessions: number }>;

  /** Every key of the app in any state, oldest first. */
  listKeys(appId: string): Promise<SigningKeyRecord[]>;
  /**
   * One atomic step: current → retired, next → current, `newNext` inserted as next. Under concurrent
   * calls each one is a whole rotation (no key is promoted twice). With `due`, the rotation happens
   * only if its conditions still hold inside the transaction, so of several processes finding the
   * same rotation due exactly one performs it. Resolves to the new current key, or undefined when
   * the app has no next key or the rotation is not (or no longer) due.
   */
  rotateKeys(appId: string, newNext: SigningKeyRecord, now: number, due?: RotationDue): Promise<SigningKeyRecord | undefined>;
  /**
   * Destroys the private keys of `kids` (retired past their lifetime, or revoked) and marks them
   * pruned; their rows stay as records. Resolves to the kids pruned by this call (not those another
   * process pruned first).
   */
  pruneKeys(appId: string, kids: string[], now: number): Promise<string[]>;
  /**
   * Revokes `kid` atomically. Revoking the current key promotes next to current; revoking current or
   * next inserts `replacementNext` so a next key is always published. Resolves to the revoked key,
   * or undefined when the app has no such key.
   */
  revokeKey(
    appId: string,
    kid: string,
    replacementNext: SigningKeyRecord,
    now: number,
  ): Promise<SigningKeyRecord | undefined>;

  /**
   * Stores a new session and its first refresh token, atomically; the session keeps the token's ip and
   * user agent as its login's. In the same transaction: with `issueKey`, first revokes (`retried`) the
   * live sessions of that app and subject started with the same key and never renewed (no token has
   * the session's id as its parent: callers give a session's first token that id as its jid), an
   * earlier attempt of this issue whose answer was lost; with `maxLiveSessions` (1 or more), then
   * revokes (`session-limit`) the subject's oldest live sessions (not revoked, not past `expiresAt`)
   * beyond that many, the new one counted and always kept, even beside another started in the same
   * millisecond. With `signedBy` (the kid that signed the pair), throws `signingKeyRevoked` and
   * stores nothing if that key has been revoked since it was read.
   */
  createSession(session: SessionRecord, first: RefreshTokenRecord, options?: { issueKey?: string; maxLiveSessions?: number; signedBy?: string }): Promise<void>;
  /** The stored sessions of one subject of an app (live, revoked, or ended but not yet pruned), newest first. */
  listSessions(appId: string, sub: string): Promise<SessionListing[]>;
  /**
   * The newest `limit` live sessions (not revoked, not past `expiresAt` at `now`) of one subject of an
   * app, newest first; then the live session `include` of that app and subject, if it is not among them.
   */
  listLiveSessions(appId: string, sub: string, now: number, options: { limit: number; include?: string }): Promise<SessionListing[]>;
  /** A refresh token with its session and its child, the token it was renewed into: a token is used exactly when it has one. */
  findRefreshToken(jid: string): Promise<RefreshToken | undefined>;
  /**
   * Uses the token `child.parentJid` by storing its one child, only if it has none yet and their
   * session is not revoked. Concurrency guarantee: under concurrent invocation for the same parent —
   * from this process or any other sharing the database — exactly one caller resolves `true`; every
   * other resolves `false` and nothing of its child is stored. A parent never gets two children. With
   * `signedBy`, throws `signingKeyRevoked` and stores nothing if that key has been revoked.
   */
  consumeRefreshToken(child: RefreshTokenRecord & { parentJid: string }, signedBy?: string): Promise<boolean>;
  /** Throws `signingKeyRevoked` if the key `kid` has been revoked: the check of the two writes above, for a pair that stores nothing. */
  refuseRevokedKey(kid: string): Promise<void>;
  /**
   * Replaces sealed private keys of `appId` (re-sealed under another master key), atomically, each
   * only if it is still sealed as `from` (not pruned or re-sealed meanwhile). Resolves to how many
   * were replaced.
   */
  resealKeys(appId: string, changes: Array<{ kid: string; from: string; to: string }>): Promise<number>;

  /**
   * Sets `personal` (JSON text, or null for none) on the live sessions of one subject of an app, for
   * the auth tokens they issue from then on; resolves to how many.
   */
  updatePersonal(appId: string, sub: string, personal: string | null, now: number): Promise<number>;

  /** Revokes one session (idempotent: an already revoked session keeps its first reason). */
  revokeSession(sessionId: string, reason: RevokeReason, now: number): Promise<void>;
  /**
   * Revokes the app's live sessions, of one subject, one session, or all, but for `exceptSessionId`;
   * resolves to how many were live. All of the app's (the kill switch) or a subject's may be many:
   * that is done in small transactions, resting between them, and leaves alone sessions started
   * after `now`.
   */
  revokeSessions(appId: string, filter: SessionFilter, reason: RevokeReason, now: number): Promise<number>;

  /**
   * Deletes what can never be used again: refresh tokens past their `exp` (a token only with or after
   * its parent, so that a used token is never left without the child that says it was used; one whose
   * parent is kept goes in a later call), sessions whose newest (never used) refresh token is among
   * them, and sessions past their absolute end. A revoked session is kept while its newest token is
   * unexpired, so a replayed token is still refused as revoked. Works in small batches, resting between
   * them, so that neither the write lock nor the caller's event loop is held for long, and a backlog
   * leaves the lock to other writers most of the time; once `signal` is aborted it stops after the
   * batch in hand (a later call takes up the rest).
   * Resolves to how many rows went.
   */
  pruneExpired(now: number, signal?: AbortSignal): Promise<{ refreshTokens: number; sessions: number }>;

  recordAudit(event: AuditEvent): Promise<void>;
  /**
   * Records `event` unless an event of the same name, app and client address was recorded after
   * `since` (ms), as one check and insert that processes take in turn: of several that record the same
   * thing at once, exactly one does. Resolves to whether this one did.
   */
  recordAuditOnce(event: AuditEvent, since: number): Promise<boolean>;
  /** Newest first. */
  listAudit(filter: { appId?: string; since?: number; limit: number }): Promise<AuditEvent[]>;
  /** Deletes the audit events from before `before` (ms), in small batches like pruneExpired; resolves to how many went. */
  pruneAudit(before: number): Promise<number>;

  /**
   * At a server's start, atomically: replaces the ids of the master keys it runs with, and its JWKS
   * caching, made by `jwksCaching` of the one recorded before (null if none). Resolves to what it recorded.
   */
  recordServerStart(start: { masterKeyIds: string[]; jwksCaching: (recorded: JwksCaching | null) => JwksCaching }, now: number): Promise<JwksCaching>;
  /** The ids the last server start recorded; none before one. */
  serverMasterKeys(): Promise<string[]>;
  /** The JWKS caching the last server start recorded; null before one (or before the version that records it). */
  serverJwksCaching(): Promise<JwksCaching | null>;

  /**
   * Writes a consistent copy of the whole store to `file`, a new file readable by its user only, while
   * other connections go on reading and writing. Throws `conflict` if `file` exists. Resolves to its size
   * in bytes once it is on disk.
   */
  backup(file: string): Promise<number>;

  close(): Promise<void>;
}
