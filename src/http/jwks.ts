import type { Handler } from 'hono';
import type { Keyring } from '../keyring/keyring.js';
import type { Repository } from '../storage/repository.js';
import type { AppEnv } from './env.js';

/**
 * GET /app/:app_id/jwks.json — public, and readable cross-origin so browsers can fetch it. Disabled
 * apps keep publishing, so tokens already issued still verify. Verifiers may cache it for
 * `maxAgeSeconds`, which is why a next key is published that long before it signs. createApp puts an
 * ETag on it (304 on If-None-Match).
 */
export function jwksHandler({ repo, keyring, maxAgeSeconds }: { repo: Repository; keyring: Keyring; maxAgeSeconds: number }): Handler<AppEnv> {
  return async function jwks(c) {
    const app = await repo.findApp(c.req.param('app_id') ?? '');
    if (!app) return c.json({ message: 'unknown app' }, 404);
    c.header('Cache-Control', `public, max-age=${maxAgeSeconds}`);
    return c.json(await keyring.jwks(app));
  };
}
