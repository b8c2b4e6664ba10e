import { createMiddleware } from 'hono/factory';
import { appKeyFromAuthorization } from '../apps/app-key.js';
import type { AppService } from '../apps/app-service.js';
import type { AuditLog } from '../audit.js';
import { invalidAppKey, tooManyRequests, TokenmintError } from '../errors.js';
import { isAppId } from '../apps/app-id.js';
import { RECORDED_BLOCKS_PER_WINDOW, type AppKeyLimiter } from './app-key-limiter.js';
import { clientAddress } from './client-address.js';
import type { AppEnv } from './env.js';

/** 429 with Retry-After while `client` is blocked on `appId` (see AppKeyLimiter). */
function refuseIfBlocked(limiter: AppKeyLimiter, appId: string, client: string): void {
  const retryAfter = limiter.retryAfterSeconds(appId, client);
  if (retryAfter > 0) throw tooManyRequests(retryAfter);
}

/**
 * For the app's public JWKS: contract §3 gives a blocked address 429 on every request to that app,
 * not only on the routes that take an app key (which appAuth refuses itself).
 */
export function refuseBlockedClient({ limiter, trustProxyHeader }: { limiter: AppKeyLimiter; trustProxyHeader: string | undefined }) {
  return createMiddleware<AppEnv>(async function refuseBlockedClient(c, next) {
    refuseIfBlocked(limiter, c.req.param('app_id') ?? '', clientAddress(c, trustProxyHeader));
    await next();
  });
}

/**
 * Authenticates the app named in the path with the app key of the Authorization header and puts it
 * in `c.get('app')`. A client address that failed too often is answered 429 before the key is looked at.
 */
export function appAuth({ apps, audit, limiter, trustProxyHeader }: { apps: AppService; audit: AuditLog; limiter: AppKeyLimiter; trustProxyHeader: string | undefined }) {
  return createMiddleware<AppEnv>(async function appAuth(c, next) {
    const appId = c.req.param('app_id') ?? '';
    // A path that cannot name an app gets the same 403 before the limiter, which would otherwise
    // remember it: ten thousand 16 KB ids from one address took a server from 79 to 257 MB.
    if (!isAppId(appId)) throw invalidAppKey('malformed app id');
    const client = clientAddress(c, trustProxyHeader);
    refuseIfBlocked(limiter, appId, client);
    try {
      c.set('app', await apps.authenticate(appId, appKeyFromAuthorization(c.req.header('authorization'))));
    } catch (error) {
      // Every wrong key counts. A block goes to the audit log (kept until an admin prunes it) only for
      // an app that exists (app ids are the caller's to invent) and only the first
      // RECORDED_BLOCKS_PER_WINDOW of an app in a window; the last of those says so.
      if (error instanceof TokenmintError && error.code === 'ERR_INVALID_APP_KEY' && limiter.recordFailure(appId, client) && error.reason !== 'unknown app') {
        await recordAppKeyBlock({ audit, limiter }, appId, client, { requestId: c.get('requestId'), reason: error.reason });
      }
      throw error;
    }
    await next();
  });
}

/**
 * Records the start of a block of an app that exists, the first RECORDED_BLOCKS_PER_WINDOW of the app
 * in a window (the last of them says so), with the request that started it when it was this worker's.
 * Every worker of a cluster may start the same block (AppKeyLimiter.recordSharedFailure): the first
 * to record it does, the others find it within the block's window and record nothing.
 */
export async function recordAppKeyBlock(
  { audit, limiter }: { audit: AuditLog; limiter: AppKeyLimiter },
  appId: string,
  client: string,
  { requestId, reason }: { requestId?: string; reason?: string } = {},
): Promise<void> {
  const number = limiter.blockNumber(appId);
  const last = number === RECORDED_BLOCKS_PER_WINDOW ? { later_blocks_not_recorded: true } : {};
  if (number > RECORDED_BLOCKS_PER_WINDOW) return;
  const fields = { appId, clientAddress: client, requestId, detail: { reason: reason ?? 'wrong app keys counted by another worker', ...last } };
  await audit.record('security.app_key_blocked', fields, { onceSince: limiter.blockStartedAfter() });
}
