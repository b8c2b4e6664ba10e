// tokenmint/client — for an app's backend: issue, renew and revoke over HTTP with the app key.
// Runs on the platform's fetch (Node 20+, Bun, Deno, workers); its one import, the form of an app id, imports nothing.
import { APP_ID_RULE, isAppId } from './apps/app-id.js';

/** A token pair as tokenmint answers it. */
export interface TokenPair {
  auth_token: string;
  refresh_token: string;
  key_id: string;
  /** Base64 of the signing key's SPKI PEM. */
  public_key: string;
}

/** A live session as tokenmint lists it, for a "your devices" page: the client it logged in from. */
export interface SessionInfo {
  session_id: string;
  /** ISO 8601: the login, and the session's absolute end. */
  created_at: string;
  expires_at: string;
  ip: string | null;
  useragent: string | null;
  /** The session of the refresh token given to `sessions()`. */
  current: boolean;
}

/** The user a request is made for: copied into the auth token. */
export interface UserAgentInfo {
  ip: string;
  useragent: string;
}

export interface ClientOptions {
  /** Where tokenmint listens, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  appId: string;
  appKey: string;
  /** Retries after a network error or a 5xx (default 3), with exponential backoff from `retryDelayMs`. */
  retries?: number;
  /** First backoff delay (default 100 ms; then 200, 400, … with jitter, at most 2 s). */
  retryDelayMs?: number;
  /** Per attempt (default 10 s). */
  timeoutMs?: number;
  /**
   * A renew is retried only while less than this has passed since its first attempt (default 8 s):
   * the first attempt may have been used already, and a repeat after the app's reuse-grace (default
   * 10 s) is reuse, which ends the session. Keep it below the app's reuse-grace.
   */
  renewRetryWindowMs?: number;
  fetch?: typeof fetch;
}

/** Every error the client throws; `kind` says what happened, and what to do about it. */
export class TokenmintClientError extends Error {
  override name = 'TokenmintClientError';
  constructor(
    readonly kind: 'invalid_refresh_token' | 'invalid_app_key' | 'rate_limited' | 'invalid_request' | 'unavailable',
    message: string,
    readonly details: {
      status?: number;
      /** rate_limited: seconds to wait, from `Retry-After`. */
      retryAfterSeconds?: number;
      /** invalid_request: the field errors. */
      errors?: Array<{ path: string; message: string }>;
      /**
       * The `X-Request-Id` the call sent, the same on each of its attempts: tokenmint's log lines of
       * the call carry it as `request_id`, even those of an attempt whose answer never arrived.
       */
      requestId?: string;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: details.cause });
  }
}

/** The refresh token is bad in any way: used, expired, revoked, forged. Log the user out. */
export class InvalidRefreshTokenError extends TokenmintClientError {
  override name = 'InvalidRefreshTokenError';
  constructor(status: number) {
    super('invalid_refresh_token', 'invalid refresh token', { status });
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const PAIR_FIELDS = ['auth_token', 'refresh_token', 'key_id', 'public_key'] as const;

/**
 * The token pair of a 2xx answer. Anything else came from something other than tokenmint (a proxy's
 * page, a wrong baseUrl): `unavailable`, retried like a 5xx, rather than an empty pair for the caller.
 */
function pairOf(answer: unknown): TokenPair {
  const fields = (answer ?? {}) as Record<string, unknown>;
  if (PAIR_FIELDS.every((field) => typeof fields[field] === 'string')) return answer as TokenPair;
  throw new TokenmintClientError('unavailable', 'the answer is not a token pair: is baseUrl a tokenmint server?');
}

/** The count of a revoke-subject answer; anything else is `unavailable`, as in pairOf. */
function revokedCount(answer: unknown): number {
  const revoked = (answer as { revoked?: unknown } | null)?.revoked;
  if (typeof revoked === 'number') return revoked;
  throw new TokenmintClientError('unavailable', 'the answer is not a count of revoked sessions: is baseUrl a tokenmint server?');
}

/** The count of an update-personal answer; anything else is `unavailable`, as in pairOf. */
function updatedCount(answer: unknown): number {
  const updated = (answer as { updated?: unknown } | null)?.updated;
  if (typeof updated === 'number') return updated;
  throw new TokenmintClientError('unavailable', 'the answer is not a count of updated sessions: is baseUrl a tokenmint server?');
}

/** The sessions of a sessions answer; anything else is `unavailable`, as in pairOf. */
function sessionList(answer: unknown): SessionInfo[] {
  const sessions = (answer as { sessions?: unknown } | null)?.sessions;
  if (Array.isArray(sessions)) return sessions as SessionInfo[];
  throw new TokenmintClientError('unavailable', 'the answer is not a list of sessions: is baseUrl a tokenmint server?');
}

/**
 * A call's body as JSON, made once for all its attempts. What JSON cannot hold is a TypeError before
 * anything is sent: JSON.stringify throws for a BigInt or a cycle (which, thrown inside an attempt,
 * was taken for a network error and retried), and writes NaN and ±Infinity as null, which would
 * reach the tokens as null without a word.
 */
function bodyJson(body: unknown): string {
  return JSON.stringify(body, (key, value: unknown) => {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`${JSON.stringify(key)} is ${value}, which JSON cannot hold`);
    return value;
  });
}

/** What setTimeout and AbortSignal.timeout hold; given more, they fire after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Misuse is a TypeError at once, as jose does, rather than every call failing later. */
function checkOptions(options: ClientOptions): void {
  if (!URL.canParse(options.baseUrl)) throw new TypeError(`baseUrl must be an absolute URL such as http://127.0.0.1:8080, not ${JSON.stringify(options.baseUrl)}`);
  for (const name of ['appId', 'appKey'] as const) if (typeof options[name] !== 'string' || options[name] === '') throw new TypeError(`${name} must be a non-empty string`);
  // Else tokenmint answers 403 "invalid app key", as for an unknown app, and the key gets the blame.
  if (!isAppId(options.appId)) throw new TypeError(`appId must be ${APP_ID_RULE}, not ${JSON.stringify(options.appId)}`);
  const numbers = [['retries', 0, 100], ['retryDelayMs', 0, MAX_TIMER_MS], ['timeoutMs', 1, MAX_TIMER_MS], ['renewRetryWindowMs', 0, MAX_TIMER_MS]] as const;
  for (const [name, min, max] of numbers) {
    const value = options[name];
    if (value !== undefined && !(Number.isInteger(value) && value >= min && value <= max)) throw new TypeError(`${name} must be a whole number from ${min} to ${max}, not ${String(value)}`);
  }
}

export function createClient(options: ClientOptions) {
  checkOptions(options);
  const { baseUrl, appId, appKey, retries = 3, retryDelayMs = 100, timeoutMs = 10_000, renewRetryWindowMs = 8_000 } = options;
  const fetchImpl = options.fetch ?? fetch;
  const base = `${baseUrl.replace(/\/+$/, '')}/app/${encodeURIComponent(appId)}`;

  /** One attempt, resolving to a 2xx answer's JSON; throws a TokenmintClientError, `unavailable` meaning "safe to try again". */
  async function attempt(route: string, body: string, requestId: string): Promise<unknown> {
    let res: Response;
    // An issue's repeats say they are one call: the server then replaces the session of an attempt
    // whose answer was lost instead of leaving it beside the new one.
    const idempotency: Record<string, string> = route === 'issue' ? { 'idempotency-key': requestId } : {};
    try {
      res = await fetchImpl(`${base}/${route}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${appKey}`, 'content-type': 'application/json', 'x-request-id': requestId, ...idempotency },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (cause) {
      throw new TokenmintClientError('unavailable', `tokenmint unreachable: ${String(cause)}`, { cause });
    }
    const answer = (await res.json().catch(() => ({}))) as { message?: string; errors?: Array<{ path: string; message: string }> };
    if (res.ok) return answer;
    const status = res.status;
    if (status === 401) throw new InvalidRefreshTokenError(status);
    if (status === 403) throw new TokenmintClientError('invalid_app_key', 'invalid app key (or the app is disabled)', { status });
    if (status === 429) {
      throw new TokenmintClientError('rate_limited', 'too many requests', { status, retryAfterSeconds: Number(res.headers.get('retry-after') ?? 0) });
    }
    if (status >= 500) throw new TokenmintClientError('unavailable', `tokenmint answered ${status}`, { status });
    throw new TokenmintClientError('invalid_request', answer.message ?? `tokenmint answered ${status}`, { status, errors: answer.errors ?? [] });
  }

  /**
   * The route's answer as `read` makes it of the 2xx JSON. Retries network errors, 5xx and answers
   * `read` refuses (`unavailable`) with backoff, none later than `windowMs` after the first attempt.
   * Safe for renew within the app's reuse grace: a repeat answers the same child session; a repeated
   * issue replaces the session its earlier attempt started (Idempotency-Key); the revokes have no
   * reuse to trip (a retried revokeSubject counts only what its last attempt ended). A 4xx is an
   * answer, never retried.
   */
  async function call<T>(route: string, body: unknown, read: (answer: unknown) => T, windowMs = Infinity): Promise<T> {
    const json = bodyJson(body);
    const started = Date.now();
    const requestId = crypto.randomUUID();
    for (let i = 0; ; i++) {
      try {
        return read(await attempt(route, json, requestId));
      } catch (error) {
        if (error instanceof TokenmintClientError) error.details.requestId = requestId;
        if (!(error instanceof TokenmintClientError) || error.kind !== 'unavailable' || i >= retries) throw error;
        const delay = Math.min(2000, retryDelayMs * 2 ** i) * (0.5 + Math.random() / 2);
        if (Date.now() + delay - started >= windowMs) throw error;
        await sleep(delay);
      }
    }
  }

  // Concurrent renews of one refresh token in this process share one request: a second request
  // would be answered from the reuse grace at best, and be reuse at worst.
  const renewing = new Map<string, Promise<TokenPair>>();

  return {
    /** Starts a session for a user your backend has logged in. */
    issue(input: UserAgentInfo & { sub: string; personal?: Record<string, unknown> }): Promise<TokenPair> {
      return call('issue', input, pairOf);
    },

    /** Rotates a refresh token into a new pair. Throws InvalidRefreshTokenError when it cannot renew. */
    renew(input: UserAgentInfo & { refresh_token: string }): Promise<TokenPair> {
      let pending = renewing.get(input.refresh_token);
      if (!pending) {
        pending = call('renew', input, pairOf, renewRetryWindowMs).finally(() => renewing.delete(input.refresh_token));
        renewing.set(input.refresh_token, pending);
      }
      return pending;
    },

    /** Ends the session of a refresh token (answers the same for a token that is already dead). */
    async revoke(refreshToken: string): Promise<void> {
      await call('revoke', { refresh_token: refreshToken }, () => undefined);
    },

    /**
     * Ends every live session of a subject (after a password change, "log out everywhere"); resolves
     * to how many. With `exceptRefreshToken`, all but that token's session ("log out everywhere
     * else"); a token that is not one of this subject throws InvalidRefreshTokenError and ends nothing.
     */
    async revokeSubject(sub: string, options: { exceptRefreshToken?: string } = {}): Promise<number> {
      return call('revoke-subject', { sub, except_refresh_token: options.exceptRefreshToken }, revokedCount);
    },

    /** The live sessions of a subject, newest first (at most 100); give the user's refresh token to have theirs marked `current` (and listed). */
    sessions(sub: string, options: { refreshToken?: string } = {}): Promise<SessionInfo[]> {
      return call('sessions', { sub, refresh_token: options.refreshToken }, sessionList);
    },

    /** Ends one session of a subject, by its `session_id` from `sessions()` ("log out that device"); resolves to 1, or 0 if it was not live. */
    revokeSession(sub: string, sessionId: string): Promise<number> {
      return call('revoke-session', { sub, session_id: sessionId }, revokedCount);
    },

    /**
     * New `personal` claims (null: none) for every live session of a subject (the user renamed
     * themselves), in the auth tokens of their next renews; resolves to how many sessions.
     */
    updatePersonal(sub: string, personal: Record<string, unknown> | null): Promise<number> {
      return call('update-personal', { sub, personal }, updatedCount);
    },
  };
}

export type TokenmintClient = ReturnType<typeof createClient>;
