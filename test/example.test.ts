import path from 'node:path';
import Database from 'better-sqlite3';
import type { BrowserContext, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { launchChromium, runBrowser } from './chromium.js';
import { decodePart, onCleanup, tempDir } from './helpers.js';
import { cliProcess, startProcess } from './processes.js';

// Short, to see it expire; long enough (at least 2 s of life after the second it was issued in) for the steps before.
const ACCESS_TTL_SECONDS = 3;

/** `npm run example` without the build: the example backend and its own tokenmint, data in `dir`. */
async function startExample(dir: string) {
  const env = { ...process.env, EXAMPLE_DIR: dir, EXAMPLE_PORT: '0', EXAMPLE_ACCESS_TTL: String(ACCESS_TTL_SECONDS), NO_COLOR: '1' };
  // Stopped with SIGTERM, so that it stops its tokenmint on the way out.
  const example = await startProcess(path.resolve('dist-examples/run.js'), { env, ready: /example: open (http:\/\/\S+)/, on: 'stdout' });
  onCleanup(() => example.stop('SIGTERM'));
  const lines = () => example.stdout().split('\n');
  return {
    url: example.url,
    /** The backend's request log (hono's logger): how many answers of `method path status` so far. */
    answers: (request: string) => lines().filter((l) => l.startsWith(`--> ${request} `)).length,
    /** The most requests to `method path` the backend was ever serving at once. */
    mostAtOnce(request: string) {
      let serving = 0;
      let most = 0;
      for (const line of lines()) {
        if (line === `<-- ${request}`) most = Math.max(most, ++serving);
        if (line.startsWith(`--> ${request} `)) serving--;
      }
      return most;
    },
  };
}

/** tokenmint's own record of the user's sessions and refresh tokens, read from its database file. */
function tokenmintRecord(dir: string) {
  const db = new Database(path.join(dir, 'tokenmint.db'), { readonly: true });
  try {
    return {
      sessions: db.prepare('SELECT session_id, revoked_at, revoke_reason FROM sessions').all() as Array<{ session_id: string; revoked_at: number | null; revoke_reason: string | null }>,
      tokens: db.prepare('SELECT jid, parent_jid FROM refresh_tokens ORDER BY issued_at, jid').all() as Array<{ jid: string; parent_jid: string | null }>,
      reuse: db.prepare("SELECT count(*) AS n FROM audit_events WHERE event = 'security.refresh_reuse'").get() as { n: number },
    };
  } finally {
    db.close();
  }
}

const pageState = (tab: Page) => tab.evaluate(() => document.body.dataset.state);

/** Opens the example's page in `tab`, which shows the login, and logs in as ada. */
async function logIn(tab: Page, url: string) {
  await tab.goto(url);
  await tab.waitForSelector('body[data-state="logged-out"]');
  await tab.fill('input[name=name]', 'ada');
  await tab.click('#login button');
  await tab.waitForSelector('body[data-state="logged-in"]');
}

type ApiAnswer = { status: number; body: { sub: string; jid: string } | null };
/** Both tabs call the API at the same moment (a shared wall-clock instant, not one after the other). */
function callTogether(tabs: Page[]): Promise<ApiAnswer[]> {
  const at = Date.now() + 300;
  return Promise.all(
    tabs.map((tab) =>
      tab.evaluate(async (at) => {
        await new Promise((resolve) => setTimeout(resolve, at - Date.now()));
        return (window as unknown as { callApi: () => Promise<ApiAnswer> }).callApi();
      }, at),
    ),
  );
}

/** Waits until the access token in the cookie jar has expired (a second past its `exp`). */
async function accessExpired(context: BrowserContext) {
  const access = (await context.cookies()).find((c) => c.name === 'access_token');
  if (!access) return;
  const exp = decodePart(access.value, 1).exp as number;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, exp * 1000 + 1000 - Date.now())));
}

describe.skipIf(!runBrowser)('the example app (npm run example) in real headless Chromium', () => {
  it('two tabs after the access token expired: one refresh for both, both succeed, the session never forks; scripts cannot read the tokens; a logout or a refused refresh reaches the other tab at once', async () => {
    const dir = tempDir();
    const example = await startExample(dir);
    const context = await (await launchChromium()).newContext();

    const tab1 = await context.newPage();
    await logIn(tab1, example.url);
    const tab2 = await context.newPage();
    await tab2.goto(example.url);
    await tab2.waitForSelector('body[data-state="logged-in"]');
    expect(await tab2.textContent('#who')).toBe('ada');

    // The tokens are in the jar, HttpOnly, and out of reach of the page's scripts.
    const jar = await context.cookies();
    expect(jar.filter((c) => c.name.endsWith('_token')).map((c) => [c.name, c.httpOnly, c.sameSite])).toEqual(
      expect.arrayContaining([
        ['access_token', true, 'Lax'],
        ['refresh_token', true, 'Lax'],
      ]),
    );
    for (const tab of [tab1, tab2]) {
      const visible = await tab.evaluate(() => document.cookie + JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
      for (const cookie of jar) expect(visible).not.toContain(cookie.value);
    }

    for (const round of [1, 2]) {
      await accessExpired(context);
      const deniedBefore = example.answers('GET /api/me 401');
      const [a, b] = await callTogether([tab1, tab2]);
      expect(a).toMatchObject({ status: 200, body: { sub: 'ada' } });
      expect(b).toMatchObject({ status: 200, body: { sub: 'ada' } });
      expect(a!.body!.jid).toBe(b!.body!.jid); // both tabs now hold the one new pair
      // Both first requests met the expired token; their refreshes never ran at the same time.
      expect(example.answers('GET /api/me 401') - deniedBefore).toBe(2);
      expect(example.mostAtOnce('POST /auth/refresh')).toBe(1);
      expect([await pageState(tab1), await pageState(tab2)]).toEqual(['logged-in', 'logged-in']);

      // tokenmint's side: one renew per round for both tabs — one session, alive, a straight chain of
      // round+1 refresh tokens, no reuse.
      const record = tokenmintRecord(dir);
      expect(record.sessions).toHaveLength(1);
      expect(record.sessions[0]!.revoked_at).toBeNull();
      expect(record.tokens).toHaveLength(round + 1);
      // Each token renewed into the next (which makes it used); the newest is unused.
      record.tokens.forEach((token, i) => expect(token.parent_jid).toBe(i === 0 ? null : record.tokens[i - 1]!.jid));
      expect(record.tokens.at(-1)!.jid).toBe(a!.body!.jid);
      expect(record.reuse.n).toBe(0);
    }

    // Log out in one tab: the other shows the login at once (BroadcastChannel), with no call of its own.
    const apiCalls = example.answers('GET /api/me');
    await tab1.click('#logout');
    await tab1.waitForSelector('body[data-state="logged-out"]');
    await tab2.waitForSelector('body[data-state="logged-out"]');
    expect(example.answers('GET /api/me')).toBe(apiCalls);
    expect((await context.cookies()).filter((c) => c.name.endsWith('_token'))).toEqual([]);
    const [afterLogout] = await callTogether([tab2]);
    expect(afterLogout!.status).toBe(401);
    const record = tokenmintRecord(dir);
    expect(record.sessions[0]!.revoked_at).not.toBeNull();
    expect(record.reuse.n).toBe(0);

    // A session ended elsewhere (the admin's kill switch): the tab whose refresh is refused tells the other.
    await tab2.fill('input[name=name]', 'ada');
    await tab2.click('#login button');
    await tab2.waitForSelector('body[data-state="logged-in"]');
    expect((await callTogether([tab1]))[0]!.status).toBe(200);
    await tab1.waitForSelector('body[data-state="logged-in"]');
    expect(await cliProcess({ DATABASE_URL: 'tokenmint.db' }, dir, 'session', 'revoke', 'example', '--all')).toEqual({ revoked: 1 });
    await accessExpired(context);
    const [apiCallsBefore, refusedBefore] = [example.answers('GET /api/me'), example.answers('POST /auth/refresh 401')];
    const [refused] = await callTogether([tab1]);
    expect(refused!.status).toBe(401);
    await tab2.waitForSelector('body[data-state="logged-out"]');
    expect([example.answers('GET /api/me') - apiCallsBefore, example.answers('POST /auth/refresh 401') - refusedBefore]).toEqual([1, 1]); // tab1's alone
  }, 60_000); // three waits for the access token to expire, and two browser tabs

  it('"your devices": a browser lists the user\'s sessions with itself marked, logs one other browser out, then all the others', async () => {
    const dir = tempDir();
    const example = await startExample(dir);
    const chromium = await launchChromium();
    const login = async (userAgent: string) => {
      const context = await chromium.newContext({ userAgent });
      const tab = await context.newPage();
      await logIn(tab, example.url);
      return { context, tab };
    };
    const laptop = await login('laptop-browser/1.0');
    const tablet = await login('tablet-browser/3.0');
    const phone = await login('phone-browser/2.0');

    await laptop.tab.click('#devices-show');
    await laptop.tab.waitForSelector('#devices li:nth-child(3)');
    const listed = () => laptop.tab.$$eval('#devices li', (items) => items.map((li) => [li.textContent!.split(',')[0], (li as HTMLElement).dataset.current]));
    expect(await listed()).toEqual([['phone-browser/2.0', 'false'], ['tablet-browser/3.0', 'false'], ['laptop-browser/1.0', 'true']]); // newest first
    await laptop.tab.click('#devices li[data-current="false"] button'); // the phone's
    await laptop.tab.waitForFunction(() => document.querySelectorAll('#devices li').length === 2);
    expect(await listed()).toEqual([['tablet-browser/3.0', 'false'], ['laptop-browser/1.0', 'true']]);
    await laptop.tab.click('#devices-logout-others');
    await laptop.tab.waitForFunction(() => document.querySelectorAll('#devices li').length === 1);
    expect(await listed()).toEqual([['laptop-browser/1.0', 'true']]);
    expect(tokenmintRecord(dir).sessions.map((s) => s.revoke_reason ?? 'live').sort()).toEqual(['client', 'client', 'live']);

    // The phone and the tablet are logged out at their next renew; the laptop carries on.
    for (const other of [phone, tablet]) {
      await accessExpired(other.context);
      expect((await callTogether([other.tab]))[0]!.status).toBe(401);
      await other.tab.waitForSelector('body[data-state="logged-out"]');
    }
    await accessExpired(laptop.context);
    expect((await callTogether([laptop.tab]))[0]).toMatchObject({ status: 200, body: { sub: 'ada' } });
  }, 30_000);
});
