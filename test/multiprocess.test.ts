import Database from 'better-sqlite3';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { client, decodePart, tempDir, testEnv, verifyIndependently, type Pair } from './helpers.js';
import { cliProcess, startServer } from './processes.js';

const post = (url: string, body: unknown, appKey: string) =>
  fetch(url, { method: 'POST', headers: { authorization: appKey, 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('several processes on one database file', () => {
  it('the CLI\'s changes reach running servers at once; racing renews on two servers never fork', async () => {
    const dir = tempDir();
    const env = testEnv(dir);
    const [a, b] = await Promise.all([startServer(env, dir), startServer(env, dir)]);

    // The app is created by a third process while both servers run.
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--refresh-nbf', '0');
    const issued = await post(`${a.url}/app/acme/issue`, { sub: 'u', ...client }, String(appKey));
    expect(issued.status).toBe(200);
    const pair = (await issued.json()) as Pair;

    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => post(`${(i % 2 ? a : b).url}/app/acme/renew`, { refresh_token: pair.refresh_token, ...client }, String(appKey))),
    );
    expect(answers.map((r) => r.status)).toEqual(Array(50).fill(200));
    const pairs = await Promise.all(answers.map(async (r) => (await r.json()) as Pair));
    const childJids = new Set(pairs.map((p) => verifyIndependently(p.refresh_token, p.public_key).payload.jid));
    expect(childJids.size).toBe(1);

    const db = new Database(env.DATABASE_URL!, { readonly: true });
    const children = db.prepare('SELECT count(*) FROM refresh_tokens WHERE parent_jid = ?').pluck().get(decodePart(pair.refresh_token, 1).jid);
    db.close();
    expect(children).toBe(1);

    await cliProcess(env, dir, 'app', 'disable', 'acme');
    expect((await post(`${b.url}/app/acme/issue`, { sub: 'u', ...client }, String(appKey))).status).toBe(403);
  });

  it('SIGTERM closes cleanly (exit 0) and a restarted server renews what the old one issued', async () => {
    const dir = tempDir();
    const env = testEnv(dir, { DATABASE_URL: path.join(dir, 'data', 'tm.db') });
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--refresh-nbf', '0');
    const first = await startServer(env, dir);
    const pair = (await (await post(`${first.url}/app/acme/issue`, { sub: 'u', ...client }, String(appKey))).json()) as Pair;
    expect(await first.stop('SIGTERM')).toBe(0);
    expect(first.stdout()).not.toContain(pair.refresh_token);

    const second = await startServer(env, dir);
    const res = await post(`${second.url}/app/acme/renew`, { refresh_token: pair.refresh_token, ...client }, String(appKey));
    expect(res.status).toBe(200);
  });
});
