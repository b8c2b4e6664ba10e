export interface FieldError {
  path: string;
  message: string;
}

export type ErrorCode =
  | 'ERR_INVALID_REQUEST'
  | 'ERR_INVALID_REFRESH_TOKEN'
  | 'ERR_INVALID_APP_KEY'
  | 'ERR_NOT_FOUND'
  | 'ERR_CONFLICT'
  | 'ERR_REQUEST_TOO_LARGE'
  | 'ERR_TOO_MANY_REQUESTS'
  | 'ERR_INTERNAL';

const statusOf: Record<ErrorCode, 400 | 401 | 403 | 404 | 409 | 413 | 429 | 500> = {
  ERR_INVALID_REQUEST: 400,
  ERR_INVALID_REFRESH_TOKEN: 401,
  ERR_INVALID_APP_KEY: 403,
  ERR_NOT_FOUND: 404,
  ERR_CONFLICT: 409,
  ERR_REQUEST_TOO_LARGE: 413,
  ERR_TOO_MANY_REQUESTS: 429,
  ERR_INTERNAL: 500,
};

/**
 * The one error type of tokenmint. `message` is what a client or an admin is shown; `reason` is the
 * internal cause, for the log only (a 401 says the same thing whatever went wrong).
 */
export class TokenmintError extends Error {
  override name = 'TokenmintError';
  readonly status: (typeof statusOf)[ErrorCode];

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly options: { reason?: string; errors?: FieldError[]; retryAfterSeconds?: number } = {},
  ) {
    super(message);
    this.status = statusOf[code];
  }

  get reason(): string | undefined {
    return this.options.reason;
  }

  /** The JSON body the contract gives for this error. */
  toBody(): { message: string; errors?: FieldError[] } {
    return this.options.errors ? { message: this.message, errors: this.options.errors } : { message: this.message };
  }
}

export const invalidRequest = (errors: FieldError[]) =>
  new TokenmintError('ERR_INVALID_REQUEST', 'invalid request', { errors });

export const invalidRefreshToken = (reason: string) =>
  new TokenmintError('ERR_INVALID_REFRESH_TOKEN', 'invalid refresh token', { reason });

export const invalidAppKey = (reason: string) =>
  new TokenmintError('ERR_INVALID_APP_KEY', 'invalid app key', { reason });

export const tooManyRequests = (retryAfterSeconds: number) =>
  new TokenmintError('ERR_TOO_MANY_REQUESTS', 'too many requests', { retryAfterSeconds });

export const notFound = (message: string) => new TokenmintError('ERR_NOT_FOUND', message);

export const conflict = (message: string) => new TokenmintError('ERR_CONFLICT', message);

const SIGNING_KEY_REVOKED = 'signing key revoked before the commit';
/** A pair signed by a key that was revoked before the pair was stored: nothing was stored, sign again. */
export const signingKeyRevoked = () => new TokenmintError('ERR_INTERNAL', 'internal error', { reason: SIGNING_KEY_REVOKED });
export const isSigningKeyRevoked = (error: unknown) => error instanceof TokenmintError && error.reason === SIGNING_KEY_REVOKED;
