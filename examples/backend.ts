// An app's own backend on tokenmint: the code to copy. The browser holds the tokens in HttpOnly
// cookies and never sees them; this backend holds the app key, talks to tokenmint with
// tokenmint/client, and verifies auth tokens locally against the app's JWKS.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono } from 'hono';
import { logger } from 'hono/logger';
import { z } from 'zod';
import { createClient } from 'tokenmint/client';
import { tokenmintSession, type SessionVariables } from 'tokenmint/hono';

export interface BackendOptions {
  /** Where tokenmint listens, e.g. http://127.0.0.1:8080 */
  tokenmintUrl: string;
  appId: string;
  /** From `tokenmint app create`: keep it in your secret store, never in the page. */
  appKey: string;
  /** Folder of the static page. */
  publicDir: string;
  /** Secure cookies need https; only plain-http localhost development turns them off. */
  secureCookies: boolean;
}

const loginBody = z.object({ name: z.string().trim().min(1).max(64) });

export function createBackend(options: BackendOptions) {
  const { tokenmintUrl, appId, appKey } = options;
  const client = createClient({ baseUrl: tokenmintUrl, appId, appKey });
  const auth = tokenmintSession({
    client,
    appId,
    audience: 'web-app',
    jwksUrl: `${tokenmintUrl}/app/${appId}/jwks.json`,
    cookies: { secure: options.secureCookies, sameSite: 'Lax' },
  });
  // The page imports the browser helper from the package itself (or from your bundle).
  const browserHelper = readFileSync(fileURLToPath(import.meta.resolve('tokenmint/browser')));

  return (
    new Hono<{ Variables: SessionVariables }>()
      .use(logger())
      // Your own login goes here (password, passkey, OAuth...). Once it has said who the user is:
      .post('/auth/login', async (c) => {
        const parsed = loginBody.safeParse(await c.req.json().catch(() => null));
        if (!parsed.success) return c.json({ message: 'a name is required' }, 400);
        const claims = await auth.login(c, { sub: parsed.data.name, personal: { name: parsed.data.name } });
        return c.json({ sub: claims.sub });
      })
      // fetchWithRefresh's refreshUrl: renews from the refresh cookie, sets both cookies.
      .post('/auth/refresh', async (c) => ((await auth.refresh(c)) ? c.body(null, 204) : c.json({ message: 'not logged in' }, 401)))
      .post('/auth/logout', async (c) => {
        await auth.logout(c);
        return c.body(null, 204);
      })
      // The API answers 401 once the access token has expired (renew: false): the page refreshes
      // through /auth/refresh, one refresh for all its tabs, and retries.
      .get('/api/me', auth.session({ renew: false }), (c) => {
        const { sub, jid, exp, personal } = c.get('session');
        return c.json({ sub, jid, exp, personal });
      })
      // "Your devices": the user's sessions, this browser's marked current; "log that one out", and
      // "log out all the others" (also what to call after a password change).
      .get('/api/devices', auth.session({ renew: false }), async (c) => c.json(await auth.devices(c)))
      .post('/api/devices/:session_id/logout', auth.session({ renew: false }), async (c) =>
        c.json({ ended: await client.revokeSession(c.get('session').sub, c.req.param('session_id')) }),
      )
      .post('/api/devices/logout-others', auth.session({ renew: false }), async (c) => c.json({ ended: await auth.logoutOthers(c) }))
      .get('/tokenmint/browser.js', (c) => c.body(browserHelper, 200, { 'content-type': 'text/javascript; charset=utf-8' }))
      .use('/*', serveStatic({ root: options.publicDir }))
  );
}
