import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { client, decodePart, tempDir, testEnv, type Pair } from './helpers.js';
import { cliProcess, startServer, type ServerProcess } from './processes.js';

// `npm test` kills the server a few times; `npm run test:crash` many more (CRASH_CYCLES).
const CYCLES = Number(process.env.CRASH_CYCLES ?? 3);
const CLIENTS = 8;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('crash under load', () => {
  it(`renew chains survive ${CYCLES} SIGKILLs at random moments with every invariant intact`, { timeout: 60_000 + CYCLES * 5_000 }, async () => {
    const dir = tempDir();
    const env = testEnv(dir);
    // A grace long enough to cover a restart: a client whose answer died with the server retries.
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--refresh-nbf', '0', '--reuse-grace', '120');
    let server: ServerProcess = await startServer(env, dir);

    const post = async (route: string, body: object) => {
      const res = await fetch(`${server.url}/app/acme/${route}`, { method: 'POST', headers: { authorization: String(appKey) }, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as Pair & { message?: string } };
    };
    /** Every refresh token any client received in a 200, and each client's latest. */
    const received: string[] = [];
    const latest: string[] = [];
    const unexpected: string[] = [];
    let running = true;

    const virtualClient = async (i: number) => {
      while (latest[i] === undefined) {
        try {
          const r = await post('issue', { sub: `user-${i}`, ...client });
          if (r.status === 200) received.push((latest[i] = r.body.refresh_token));
        } catch {
          await sleep(20); // server down: try again
        }
      }
      while (running) {
        try {
          const r = await post('renew', { refresh_token: latest[i], ...client });
          if (r.status !== 200) {
            unexpected.push(`client ${i}: ${r.status} ${r.body.message}`);
            return;
          }
          received.push((latest[i] = r.body.refresh_token));
        } catch {
          await sleep(20); // the answer died with the server: retry the same token
        }
      }
    };
    const clients = Array.from({ length: CLIENTS }, (_, i) => virtualClient(i));

    for (let cycle = 0; cycle < CYCLES; cycle++) {
      await sleep(150 + Math.random() * 350);
      await server.stop('SIGKILL');
      server = await startServer(env, dir);
    }
    await sleep(200);
    running = false;
    await Promise.all(clients);
    expect(unexpected).toEqual([]);
    expect(received.length).toBeGreaterThan(CLIENTS * 2);

    // Every client's latest token still renews.
    for (const token of latest) expect((await post('renew', { refresh_token: token, ...client })).status).toBe(200);
    expect(await server.stop('SIGTERM')).toBe(0);

    const db = new Database(String(env.DATABASE_URL), { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(db.prepare('SELECT parent_jid FROM refresh_tokens WHERE parent_jid IS NOT NULL GROUP BY parent_jid HAVING count(*) > 1').all()).toEqual([]);
      const row = db.prepare(
        `SELECT t.session_id, t.issued_at, s.revoked_at, s.revoke_reason, c.session_id AS child_session_id, c.issued_at AS child_issued_at
         FROM refresh_tokens t JOIN sessions s ON s.session_id = t.session_id LEFT JOIN refresh_tokens c ON c.parent_jid = t.jid WHERE t.jid = ?`,
      );
      type Row = { session_id: string; issued_at: number; revoked_at: number | null; revoke_reason: string | null; child_session_id: string | null; child_issued_at: number | null };
      for (const token of received) {
        const r = row.get(decodePart(token, 1).jid) as Row | undefined;
        // Nothing answered with 200 was lost...
        expect(r, 'a token answered with 200 is missing from the database').toBeDefined();
        // ...and each one either renewed into one child of its own session (used), or can still renew,
        // or its session was revoked for a recorded reason.
        if (r!.revoked_at !== null) expect(r!.revoke_reason).toEqual(expect.any(String));
        if (r!.child_session_id !== null) {
          expect(r!.child_session_id).toBe(r!.session_id);
          expect(r!.child_issued_at).toBeGreaterThanOrEqual(r!.issued_at);
        }
      }
    } finally {
      db.close();
    }
  });
});
