import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { toIso } from '../clock.js';
import { invalidRequest } from '../errors.js';
import type { SessionService } from '../tokens/session-service.js';
import type { AppEnv } from './env.js';
import { readJson } from './json-body.js';
import { isCallerId, issueBody, renewBody, revokeBody, revokeSessionBody, revokeSubjectBody, sessionsBody, updatePersonalBody } from './schemas.js';

/**
 * Answers carry tokens: no cache on the way may keep one (RFC 6749 §5.1), errors included. Per route,
 * not `use()`: a sub-app's `use()` would also match /app/:app_id/jwks.json and name its route
 * `/app/:app_id/*` in logs and metrics.
 */
const noStore: MiddlewareHandler<AppEnv> = async (c, next) => {
  c.header('Cache-Control', 'no-store');
  await next();
};

/** The Idempotency-Key header, if any; one that cannot be a key, or is an app key pasted there (it is stored), is a 400. */
function issueKeyOf(c: Context<AppEnv>): string | undefined {
  const key = c.req.header('idempotency-key');
  if (key === undefined) return undefined;
  if (!isCallerId(key)) throw invalidRequest([{ path: 'Idempotency-Key', message: 'must be 1–128 letters, digits, _ or -, and not an app key' }]);
  return key;
}

/**
 * POST /app/:app_id/{issue,renew,revoke,revoke-subject,sessions,revoke-session,update-personal},
 * each behind `auth` (the app key). Variables are read with `c.get`: hono's `c.var` builds an object
 * of all of them on every read.
 */
export function tokenRoutes({ sessions, auth }: { sessions: SessionService; auth: MiddlewareHandler<AppEnv> }) {
  return new Hono<AppEnv>()
    .post('/issue', noStore, auth, async function issue(c) {
      const body = await readJson(c, issueBody);
      return c.json(await sessions.issue(c.get('app'), body, issueKeyOf(c)));
    })
    .post('/renew', noStore, auth, async function renew(c) {
      const body = await readJson(c, renewBody);
      return c.json(await sessions.renew(c.get('app'), body, c.get('requestId')));
    })
    .post('/revoke', noStore, auth, async function revoke(c) {
      const body = await readJson(c, revokeBody);
      const result = await sessions.revoke(c.get('app'), body.refresh_token, c.get('requestId'));
      c.set('reason', result.reason);
      return c.json({ message: 'revoked' });
    })
    .post('/revoke-subject', noStore, auth, async function revokeSubject(c) {
      const body = await readJson(c, revokeSubjectBody);
      const revoked = await sessions.revokeSubject(c.get('app'), body.sub, { exceptRefreshToken: body.except_refresh_token, requestId: c.get('requestId') });
      return c.json({ message: 'revoked', revoked });
    })
    .post('/sessions', noStore, auth, async function liveSessions(c) {
      const body = await readJson(c, sessionsBody);
      const live = await sessions.liveSessions(c.get('app'), body.sub, body.refresh_token, c.get('requestId'));
      return c.json({
        sessions: live.map((s) => ({ session_id: s.sessionId, created_at: toIso(s.createdAt), expires_at: toIso(s.expiresAt), ip: s.ip, useragent: s.useragent, current: s.current })),
      });
    })
    .post('/revoke-session', noStore, auth, async function revokeSession(c) {
      const body = await readJson(c, revokeSessionBody);
      return c.json({ message: 'revoked', revoked: await sessions.revokeSession(c.get('app'), body.sub, body.session_id) });
    })
    .post('/update-personal', noStore, auth, async function updatePersonal(c) {
      const body = await readJson(c, updatePersonalBody);
      return c.json({ message: 'updated', updated: await sessions.updatePersonal(c.get('app'), body.sub, body.personal) });
    });
}
