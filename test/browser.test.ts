import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { client, onCleanup, tempDir, testEnv, type Pair } from './helpers.js';
import { launchChromium, runBrowser } from './chromium.js';
import { cliProcess, startServer } from './processes.js';

/**
 * Serves a page that loads the built verifier module (dist/verify.js) as-is, with jose's own browser
 * build resolved through an import map: the same file Node runs, no bundler in between.
 */
async function servePage(): Promise<string> {
  const files: Record<string, string> = {
    '/verify.js': path.resolve('dist/verify.js'),
  };
  const joseDir = path.resolve('node_modules/jose/dist/webapi');
  const html = `<!doctype html><meta charset="utf-8"><title>verifier</title>
<script type="importmap">{"imports":{"jose":"/jose/index.js"}}</script>
<script type="module">
  import { verifyAuthToken } from '/verify.js';
  window.verify = async (token, options) => {
    try {
      const claims = await verifyAuthToken(token, options);
      return { ok: true, sub: claims.sub, jid: claims.jid };
    } catch (error) {
      return { ok: false, code: error.code ?? String(error) };
    }
  };
  document.title = 'ready';
</script>`;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const file = url.pathname.startsWith('/jose/') ? path.join(joseDir, path.normalize(url.pathname.slice(6))) : files[url.pathname];
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    } else if (file && file.startsWith(path.resolve('.')) && fs.existsSync(file)) {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(fs.readFileSync(file));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

async function openPage(url: string): Promise<Page> {
  const page = await (await launchChromium()).newPage();
  await page.goto(url);
  await page.waitForFunction(() => document.title === 'ready');
  return page;
}

type Verdict = { ok: true; sub: string; jid: string } | { ok: false; code: string };
const verifyIn = (page: Page, token: string, options: object) =>
  page.evaluate(([t, o]) => (window as unknown as { verify: (t: string, o: object) => Promise<Verdict> }).verify(t, o), [token, options] as const);

describe.skipIf(!runBrowser)('tokenmint/verify in real headless Chromium', () => {
  it('verifies by public_key and by JWKS, refuses tampered and foreign tokens, and keeps working across a key rotation', async () => {
    const dir = tempDir();
    const env = testEnv(dir);
    const tokenmint = await startServer(env, dir);
    const acme = await cliProcess(env, dir, 'app', 'create', 'acme');
    const other = await cliProcess(env, dir, 'app', 'create', 'other');
    const issue = async (appId: string, appKey: unknown) => {
      const res = await fetch(`${tokenmint.url}/app/${appId}/issue`, { method: 'POST', headers: { authorization: String(appKey) }, body: JSON.stringify({ sub: `user-of-${appId}`, ...client }) });
      return (await res.json()) as Pair;
    };
    const page = await openPage(await servePage());
    const jwksUrl = `${tokenmint.url}/app/acme/jwks.json`;
    const acmeOptions = { appId: 'acme', audience: 'web-app' };

    const before = await issue('acme', acme.app_key);
    expect(await verifyIn(page, before.auth_token, { ...acmeOptions, publicKey: before.public_key })).toMatchObject({ ok: true, sub: 'user-of-acme' });
    expect(await verifyIn(page, before.auth_token, { ...acmeOptions, jwksUrl })).toMatchObject({ ok: true, sub: 'user-of-acme' });

    const [head, body, sig] = before.auth_token.split('.');
    const claims = JSON.parse(Buffer.from(body!, 'base64url').toString());
    const tampered = `${head}.${Buffer.from(JSON.stringify({ ...claims, sub: 'admin' })).toString('base64url')}.${sig}`;
    expect(await verifyIn(page, tampered, { ...acmeOptions, jwksUrl })).toEqual({ ok: false, code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    expect(await verifyIn(page, tampered, { ...acmeOptions, publicKey: before.public_key })).toEqual({ ok: false, code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    const foreign = await issue('other', other.app_key);
    expect(await verifyIn(page, foreign.auth_token, { ...acmeOptions, jwksUrl })).toMatchObject({ ok: false });
    expect(await verifyIn(page, foreign.auth_token, { ...acmeOptions, publicKey: foreign.public_key })).toEqual({ ok: false, code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });

    // Rotate while the page stays open: the new key was pre-published, so the cached JWKS knows it.
    const { kid: newKid } = await cliProcess(env, dir, 'key', 'rotate', 'acme');
    const after = await issue('acme', acme.app_key);
    expect(after.key_id).toBe(newKid);
    expect(after.key_id).not.toBe(before.key_id);
    expect(await verifyIn(page, after.auth_token, { ...acmeOptions, jwksUrl })).toMatchObject({ ok: true });
    expect(await verifyIn(page, before.auth_token, { ...acmeOptions, jwksUrl })).toMatchObject({ ok: true });
    expect(await verifyIn(page, after.auth_token, { ...acmeOptions, publicKey: after.public_key })).toMatchObject({ ok: true });

    // One JWKS fetch served the whole page life, rotation included.
    const jwksFetches = tokenmint.stdout().split('\n').filter((l) => l.includes('"route":"/app/:app_id/jwks.json"') && l.includes('"app_id":"acme"'));
    expect(jwksFetches).toHaveLength(1);

    // The page's own fetch with a header of its own is preflighted (OPTIONS), and reads the key set.
    const read = await page.evaluate((url) => fetch(url, { headers: { 'x-app-version': '7' }, cache: 'no-store' }).then((r) => r.json()).then((set) => set.keys.length, (error) => String(error)), jwksUrl);
    expect(read).toBe(3); // next, current, retired
    expect(tokenmint.stdout()).toMatch(/"method":"OPTIONS","route":"\/app\/:app_id\/jwks.json","app_id":"acme","status":204/);
  });

  it('refetches the JWKS past the browser\'s HTTP cache, so a revoked key is refused once the verifier\'s cache runs out', async () => {
    const dir = tempDir();
    const env = testEnv(dir); // the JWKS is served with max-age=300, which the browser's HTTP cache honours
    const tokenmint = await startServer(env, dir);
    const acme = await cliProcess(env, dir, 'app', 'create', 'acme');
    const res = await fetch(`${tokenmint.url}/app/acme/issue`, { method: 'POST', headers: { authorization: String(acme.app_key) }, body: JSON.stringify({ sub: 'u', ...client }) });
    const pair = (await res.json()) as Pair;
    const page = await openPage(await servePage());
    const options = { appId: 'acme', audience: 'web-app', jwksUrl: `${tokenmint.url}/app/acme/jwks.json`, jwksMaxAgeSeconds: 1 };
    expect(await verifyIn(page, pair.auth_token, options)).toMatchObject({ ok: true });
    await cliProcess(env, dir, 'key', 'revoke', 'acme', pair.key_id);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    // Until this version the browser answered the refetch from its HTTP cache, with the revoked key in it.
    expect(await verifyIn(page, pair.auth_token, options)).toEqual({ ok: false, code: 'ERR_JWKS_NO_MATCHING_KEY' });
  });
});
