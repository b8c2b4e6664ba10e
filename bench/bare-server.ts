// The floor: what a hand-rolled renew reaches with the same stack and no features — one route, one
// key, no app keys, no sessions, no reuse grace, no logging. Used only by the benchmark.
import { serve } from '@hono/node-server';
import Database from 'better-sqlite3';
import { Hono } from 'hono';
import { generateKeyPair, jwtVerify, SignJWT, exportSPKI } from 'jose';
import { randomUUID } from 'node:crypto';

const db = new Database(process.env.BARE_DB ?? ':memory:');
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.exec('CREATE TABLE IF NOT EXISTS tokens (jid TEXT PRIMARY KEY, used INTEGER NOT NULL DEFAULT 0)');
const consume = db.prepare('UPDATE tokens SET used = 1 WHERE jid = ? AND used = 0');
const insert = db.prepare('INSERT INTO tokens (jid) VALUES (?)');
const rotate = db.transaction((old: string, next: string) => consume.run(old).changes === 1 && insert.run(next).changes === 1);

const { privateKey, publicKey } = await generateKeyPair('ES256');
const publicKeyPem = Buffer.from(await exportSPKI(publicKey)).toString('base64');

async function pair(sub: string) {
  const jid = randomUUID();
  const now = Math.floor(Date.now() / 1000);
  const auth = await new SignJWT({ sub, jid }).setProtectedHeader({ alg: 'ES256', typ: 'JWT' }).setIssuedAt(now).setExpirationTime(now + 3600).sign(privateKey);
  const refresh = await new SignJWT({ sub, jid, type: 'refresh' }).setProtectedHeader({ alg: 'ES256', typ: 'JWT' }).setIssuedAt(now).setExpirationTime(now + 10800).sign(privateKey);
  return { jid, body: { auth_token: auth, refresh_token: refresh, public_key: publicKeyPem } };
}

const app = new Hono()
  .post('/issue', async (c) => {
    const { jid, body } = await pair('user');
    insert.run(jid);
    return c.json(body);
  })
  .post('/renew', async (c) => {
    const { refresh_token } = await c.req.json<{ refresh_token: string }>();
    const { payload } = await jwtVerify(refresh_token, publicKey, { algorithms: ['ES256'] }).catch(() => ({ payload: undefined }));
    if (!payload || payload.type !== 'refresh') return c.json({ message: 'invalid refresh token' }, 401);
    const next = await pair(String(payload.sub));
    if (!rotate(String(payload.jid), next.jid)) return c.json({ message: 'invalid refresh token' }, 401);
    return c.json(next.body);
  });

serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 0), hostname: '127.0.0.1' }, (info) => {
  process.stderr.write(`bare renew listening on http://127.0.0.1:${info.port}\n`);
});
