import Database from 'better-sqlite3';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { requestListener } from '../src/http/client-errors.js';
import { createLogger } from '../src/log.js';
import { client, decodePart, harness, tempDir, testEnv, verifyIndependently, type Pair } from './helpers.js';
import { childPids, cliProcess, startServer, until } from './processes.js';

const post = (url: string, body: unknown, appKey: string) =>
  fetch(url, { method: 'POST', headers: { authorization: appKey, 'content-type': 'application/json' }, body: JSON.stringify(body) });

/**
 * Meanwhile `work` runs in another process, tries to take the write lock through `db` (opened with no
 * busy timeout) every millisecond or so. Resolves to its result and, from the first try that found
 * the lock taken to the last, whether each try found it free.
 */
async function lockTriesDuring<T>(db: Database.Database, work: Promise<T>): Promise<{ result: T; during: boolean[] }> {
  let running = true;
  const done = work.finally(() => (running = false));
  const lockFree: boolean[] = [];
  while (running) {
    try {
      db.exec('BEGIN IMMEDIATE');
      db.exec('ROLLBACK');
      lockFree.push(true);
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
      lockFree.push(false);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return { result: await done, during: lockFree.slice(lockFree.indexOf(false), lockFree.lastIndexOf(false) + 1) };
}

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

  it('`tokenmint prune` of a backlog leaves the write lock to other processes most of the time', async () => {
    const dir = tempDir();
    const env = testEnv(dir);
    await cliProcess(env, dir, 'app', 'create', 'acme');
    // A backlog, as after downtime: 1,500 sessions, each a chain of 8 tokens of which 7 have expired.
    const sessionCount = 1500;
    const chain = 8;
    const nowSeconds = Math.floor(Date.now() / 1000);
    const db = new Database(env.DATABASE_URL!, { timeout: 0 }); // busy at once, never waiting
    const exp = (i: number, j: number) => (j === chain - 1 ? nowSeconds + 86_400 : nowSeconds - 60 - (chain - 1 - j) * 600 - (i % 600));
    const jid = (i: number, j: number) => `${String(exp(i, j)).padStart(12, '0')}${String(i).padStart(14, '0')}`;
    const addSession = db.prepare("INSERT INTO sessions (session_id, app_id, sub, created_at, expires_at) VALUES (?, 'acme', ?, ?, ?)");
    const addToken = db.prepare(
      "INSERT INTO refresh_tokens (jid, session_id, parent_jid, iat, nbf, exp, ip, useragent, issued_at) VALUES (?, ?, ?, ?, ?, ?, '203.0.113.7', 'test', ?)",
    );
    db.transaction(() => {
      for (let i = 0; i < sessionCount; i++) {
        addSession.run(`s${i}`, `u${i}`, Date.now(), Date.now() + 86_400_000);
        for (let j = 0; j < chain; j++) addToken.run(jid(i, j), `s${i}`, j === 0 ? null : jid(i, j - 1), exp(i, j) - 600, exp(i, j) - 600, exp(i, j), (exp(i, j) - 600) * 1000);
      }
    })();

    const { result, during } = await lockTriesDuring(db, cliProcess(env, dir, 'prune'));
    db.close();
    expect(result).toEqual({ pruned_refresh_tokens: sessionCount * (chain - 1), pruned_sessions: 0, pruned_keys: 0 });
    // While the prune ran, the lock was free to others at most tries (run back to back, its batches
    // held it nearly all the time).
    expect(during.length).toBeGreaterThan(0);
    expect(during.filter(Boolean).length / during.length).toBeGreaterThan(0.5);
  });

  // 40,000 live sessions: of many subjects in no particular order, as users log in, or of one subject
  // (a service account that logs in all day).
  it.each([
    ['all of an app\'s (the kill switch)', ['--all'], (i: number) => `u${(i * 7919) % 10_007}`, 'admin-all'],
    ['a subject\'s', ['--sub', 'robot'], () => 'robot', 'admin'],
  ] as const)('`session revoke` of %s 40,000 sessions leaves the write lock to other processes between its windows', async (_, args, sub, reason) => {
    const dir = tempDir();
    const env = testEnv(dir);
    await cliProcess(env, dir, 'app', 'create', 'acme');
    const count = 40_000;
    const db = new Database(env.DATABASE_URL!, { timeout: 0 }); // busy at once, never waiting
    const add = db.prepare("INSERT INTO sessions (session_id, app_id, sub, created_at, expires_at) VALUES (?, 'acme', ?, ?, ?)");
    db.transaction(() => {
      for (let i = 0; i < count; i++) add.run(`s${i}`, sub(i), Date.now() - 1000, Date.now() + 86_400_000);
    })();

    const { result, during } = await lockTriesDuring(db, cliProcess(env, dir, 'session', 'revoke', 'acme', ...args));
    expect(result).toEqual({ revoked: count });
    expect(db.prepare('SELECT count(*) FROM sessions WHERE revoke_reason = ?').pluck().get(reason)).toBe(count);
    db.close();
    // While it ran, the lock was free to others at a good part of the tries (in one transaction, it
    // held the lock from start to end).
    expect(during.length).toBeGreaterThan(0);
    expect(during.filter(Boolean).length / during.length).toBeGreaterThan(0.25);
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

describe('WORKERS=3: a cluster on one port and one file', () => {
  it('racing renews across workers never fork; /metrics sums every worker; SIGTERM stops them all with exit 0', async () => {
    const dir = tempDir();
    const env = testEnv(dir, { WORKERS: '3' });
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--refresh-nbf', '0');
    const server = await startServer(env, dir);
    expect(server.stderr()).toContain('3 workers');
    const pair = (await (await post(`${server.url}/app/acme/issue`, { sub: 'u', ...client }, String(appKey))).json()) as Pair;

    // One connection each (no keep-alive agent), so the cluster spreads them over its workers.
    const renewOnNewConnection = () =>
      new Promise<{ status: number; body: Pair }>((resolve, reject) => {
        const req = http.request(`${server.url}/app/acme/renew`, { method: 'POST', agent: false, headers: { authorization: String(appKey) } }, (res) => {
          let text = '';
          res.on('data', (d) => (text += d)).on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Pair }));
        });
        req.on('error', reject).end(JSON.stringify({ refresh_token: pair.refresh_token, ...client }));
      });
    const answers = await Promise.all(Array.from({ length: 60 }, renewOnNewConnection));
    expect(answers.map((r) => r.status)).toEqual(Array(60).fill(200));
    const childJids = new Set(answers.map((r) => verifyIndependently(r.body.refresh_token, pair.public_key).payload.jid));
    expect(childJids.size).toBe(1);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/tokenmint_http_requests_total\{route="\/app\/:app_id\/renew",method="POST",status="200"\} 60\n/);
    expect(metrics).toContain('tokenmint_signing_keys{app_id="acme",state="current"} 1\n');
    expect(metrics).toMatch(/^tokenmint_build_info\{version="[^"]+"\} 1$/m); // one version, not three

    expect(await server.stop('SIGTERM')).toBe(0);
    const db = new Database(env.DATABASE_URL!, { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
  });
});

describe('a cluster whose workers die', () => {
  it('the primary starts new workers, one killed or all at once, and serves again on the same port, PORT=0 included; SIGTERM between a death and its restart exits 0', async () => {
    const dir = tempDir();
    // PORT=0: the primary picks the port once. Until this version workers that all died before a new
    // one listened gave up the port it had announced, and their successors got another.
    const server = await startServer(testEnv(dir, { WORKERS: '2' }), dir);
    const primary = server.child.pid!;
    const healthy = async () => {
      for (let i = 0; i < 100; i++) {
        if (await fetch(`${server.url}/healthz`).then((r) => r.status === 200, () => false)) return true;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return false;
    };
    const workersUp = async (n: number) => {
      for (let i = 0; i < 100 && childPids(primary).length !== n; i++) await new Promise((resolve) => setTimeout(resolve, 100));
      return childPids(primary);
    };

    const [first] = await workersUp(2);
    process.kill(first!, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 1500)); // the restart delay is 1 s
    expect(await healthy(), server.stdout() + server.stderr()).toBe(true);
    expect(await workersUp(2)).not.toContain(first);

    // Both at once: nothing but the pending restarts keeps the primary alive.
    const both = childPids(primary);
    for (const pid of both) process.kill(pid, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(server.child.exitCode).toBeNull();
    expect(await healthy(), server.stdout() + server.stderr()).toBe(true);
    const again = await workersUp(2);
    expect(again.filter((pid) => both.includes(pid))).toEqual([]);
    expect(server.stdout().match(/worker exited; starting another/g)).toHaveLength(3);

    // SIGTERM while every worker is gone and their restarts are pending: no new worker, exit 0.
    for (const pid of again) process.kill(pid, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await server.stop('SIGTERM')).toBe(0);
    expect(server.stdout()).toMatch(/"msg":"closed"/);
  });
});

describe('GET /metrics in a cluster', () => {
  it('answers 200, summed over the workers that serve, while another worker starts', async () => {
    const dir = tempDir();
    const server = await startServer(testEnv(dir, { WORKERS: '2' }), dir);
    const listening = () => server.stdout().match(/"msg":"worker listening"/g)?.length ?? 0;
    await until(() => listening() === 2);
    const [first] = childPids(server.child.pid!);
    process.kill(first!, 'SIGKILL');
    await until(() => server.stdout().includes('worker exited; starting another'));
    // Its replacement is forked a second later and takes a few hundred ms to listen: scrape all along.
    // Until this version the primary asked every worker, the one starting included, which could not
    // answer yet: each scrape then waited 5 s and got a 500.
    const answers: number[] = [];
    const deadline = Date.now() + 10_000;
    while (listening() < 3 && Date.now() < deadline) {
      const res = await fetch(`${server.url}/metrics`);
      const text = await res.text();
      answers.push(res.status);
      expect(res.status, text).toBe(200);
      expect(text).toMatch(/^tokenmint_build_info\{version="[^"]+"\} 1$/m);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(listening()).toBe(3);
    expect(answers.length).toBeGreaterThan(10);
    expect(await server.stop('SIGTERM')).toBe(0);
  });
});

describe('a cluster whose new worker cannot start', () => {
  it('while another serves, it is tried again ever less often, and starts once the cause is gone; with none serving, the server stops; no worker makes a master key file', async () => {
    const dir = tempDir();
    const env = testEnv(dir, { WORKERS: '2' });
    delete env.TOKENMINT_MASTER_KEY; // the key file in keys/, which `app create` makes
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--refresh-nbf', '0');
    const keyFile = path.join(dir, 'keys', 'master.key');
    const server = await startServer(env, dir);
    const primary = server.child.pid!;
    const logLines = () => server.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const listening = () => logLines().filter((l) => l.msg === 'worker listening');
    await until(() => listening().length === 2);
    const retries = () => logLines().filter((l) => l.msg === 'a new worker could not start; the others serve on; trying again');

    // The key file away (an operator restoring it, say), then a worker dies: its replacement cannot
    // open the signing keys and exits. Before, it also made a new random key file there, and the
    // primary stopped the whole cluster.
    fs.renameSync(keyFile, `${keyFile}.away`);
    process.kill(childPids(primary)[0]!, 'SIGKILL');
    await until(() => retries().length >= 2);
    expect(retries().map((l) => l.retry_in_ms).slice(0, 2)).toEqual([1000, 2000]);
    expect(fs.existsSync(keyFile)).toBe(false);
    await until(() => server.stderr().includes('no master key is loaded')); // the workers' stderr, another pipe
    // The other worker serves all along, with the keys it loaded at its start.
    const issued = await post(`${server.url}/app/acme/issue`, { sub: 'u', ...client }, String(appKey));
    expect(issued.status).toBe(200);

    fs.renameSync(`${keyFile}.away`, keyFile);
    await until(() => listening().length === 3, 15_000);
    expect(listening()[2]).toMatchObject({ workers: 2 });
    for (let i = 0; i < 4; i++) expect((await fetch(`${server.url}/healthz`, { headers: { connection: 'close' } })).status).toBe(200);
    expect(server.child.exitCode).toBeNull();

    // With no worker left serving, a replacement that cannot start stops the server (exit 1): a
    // supervisor must see that, not a primary retrying with nothing to serve.
    fs.renameSync(keyFile, `${keyFile}.away`);
    for (const pid of childPids(primary)) process.kill(pid, 'SIGKILL');
    const exited = await new Promise<number | null>((resolve) => (server.child.exitCode !== null ? resolve(server.child.exitCode) : server.child.once('exit', resolve)));
    expect(exited, server.stdout()).toBe(1);
    expect(server.stdout()).toContain('a worker could not start; stopping');
  });
});

describe('a cluster with a worker that cannot act', () => {
  it('a worker that stops answering (SIGSTOP, as one stuck in a loop) is killed after WORKER_STALL_TIMEOUT_SECONDS and replaced', async () => {
    const dir = tempDir();
    const server = await startServer(testEnv(dir, { WORKERS: '2', WORKER_STALL_TIMEOUT_SECONDS: '3' }), dir);
    const primary = server.child.pid!;
    let workers = childPids(primary);
    for (let i = 0; i < 100 && workers.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      workers = childPids(primary);
    }
    const stuck = workers[0]!;
    process.kill(stuck, 'SIGSTOP');
    let now = childPids(primary);
    for (let i = 0; i < 150 && (now.includes(stuck) || now.length < 2); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      now = childPids(primary);
    }
    expect(now, server.stdout()).not.toContain(stuck);
    expect(now).toHaveLength(2);
    expect(server.stdout()).toMatch(new RegExp(`"pid":${stuck},"silent_ms":\\d+,"msg":"worker stopped answering; killing it"`));
    // The one left answered all along, and the new one answers too.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect(await server.stop('SIGTERM')).toBe(0);
  });

  it('SIGTERM with one worker stopped (SIGSTOP, as a stuck one): the primary kills it a little after SHUTDOWN_TIMEOUT_SECONDS and exits 1', async () => {
    const dir = tempDir();
    const server = await startServer(testEnv(dir, { WORKERS: '2', SHUTDOWN_TIMEOUT_SECONDS: '1' }), dir);
    let workers = childPids(server.child.pid!);
    for (let i = 0; i < 100 && workers.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      workers = childPids(server.child.pid!);
    }
    process.kill(workers[0]!, 'SIGSTOP');
    const started = performance.now();
    expect(await server.stop('SIGTERM')).toBe(1);
    expect(performance.now() - started).toBeGreaterThanOrEqual(2900); // 1 s, and the primary's 2 s more
    expect(server.stdout()).toContain('workers did not exit in time; killing them');
    expect(() => process.kill(workers[0]!, 0)).toThrow(); // gone
  });
});

describe('a cluster stopped as it starts', () => {
  it('SIGTERM the moment it says it listens (a worker still starting dies of the signal itself): exit 0, three times out of three', async () => {
    for (let i = 0; i < 3; i++) {
      const dir = tempDir();
      const server = await startServer(testEnv(dir, { WORKERS: '2' }), dir);
      expect(await server.stop('SIGTERM'), server.stdout()).toBe(0);
    }
  });
});

describe('a real server process', () => {
  it('answers 413 for a body over 64 KiB, whether its length is declared or it comes chunked', async () => {
    const dir = tempDir();
    const env = testEnv(dir);
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme');
    const server = await startServer(env, dir);
    const oversized = JSON.stringify({ sub: 'u', ...client, pad: 'x'.repeat(65 * 1024) });
    const headers = { authorization: String(appKey), 'content-type': 'application/json' };

    const declared = await fetch(`${server.url}/app/acme/issue`, { method: 'POST', headers, body: oversized });
    expect(declared.status).toBe(413);
    const chunks = [oversized.slice(0, 40_000), oversized.slice(40_000)].map((c) => new TextEncoder().encode(c));
    const body = new ReadableStream({ pull: (c) => (chunks.length ? c.enqueue(chunks.shift()) : c.close()) });
    const chunked = await fetch(`${server.url}/app/acme/issue`, { method: 'POST', headers, body, duplex: 'half' } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(await chunked.json()).toEqual({ message: 'request too large' });

    const small = JSON.stringify({ sub: 'u', ...client });
    const smallChunked = new ReadableStream({ start: (c) => (c.enqueue(new TextEncoder().encode(small)), c.close()) });
    expect((await fetch(`${server.url}/app/acme/issue`, { method: 'POST', headers, body: smallChunked, duplex: 'half' } as RequestInit)).status).toBe(200);
    expect((await fetch(`${server.url}/app/acme/issue`, { method: 'POST', headers, body: small })).status).toBe(200);
  });
});

/** Writes `request` on a raw connection and resolves to all the server sent before it closed. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(request));
    let answer = '';
    socket.on('data', (d) => (answer += d));
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
  });
}

describe('requests Node refuses before routing', () => {
  it('a request not all received within REQUEST_TIMEOUT_SECONDS gets 408, malformed HTTP 400, huge headers 431, each as JSON, and the connection closes; others are served meanwhile', async () => {
    const dir = tempDir();
    const env = testEnv(dir, { REQUEST_TIMEOUT_SECONDS: '1' });
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme');
    const server = await startServer(env, dir);
    const port = Number(new URL(server.url).port);

    const started = performance.now();
    const stalledBody = rawExchange(port, `POST /app/acme/renew HTTP/1.1\r\nHost: x\r\nAuthorization: ${String(appKey)}\r\nContent-Length: 200\r\n\r\n{"refresh_token":"eyJsecret`);
    // On a keep-alive connection that has had an answer already.
    const stalledHeaders = rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nPOST /app/acme/renew HTTP/1.1\r\nHost: x\r\nAuthorization: tmk_');
    // Served while those two hold their connections.
    expect((await post(`${server.url}/app/acme/issue`, { sub: 'u', ...client }, String(appKey))).status).toBe(200);
    const timedOut = await Promise.all([stalledBody, stalledHeaders]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(900);
    const malformed = await rawExchange(port, 'HELLO /\r\n\r\n');
    const hugeHeaders = await rawExchange(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`);

    // The last answer on the connection.
    const parse = (answer: string) => {
      const last = answer.slice(answer.lastIndexOf('HTTP/1.1 '));
      return { status: Number(last.split(' ')[1]), body: JSON.parse(last.split('\r\n\r\n')[1]!) as unknown };
    };
    expect(timedOut[1]).toMatch(/^HTTP\/1.1 200 OK\r\n/);
    expect(timedOut.map(parse)).toEqual([
      { status: 408, body: { message: 'request timeout' } },
      { status: 408, body: { message: 'request timeout' } },
    ]);
    expect(parse(malformed)).toEqual({ status: 400, body: { message: 'malformed request' } });
    expect(parse(hugeHeaders)).toEqual({ status: 431, body: { message: 'request headers too large' } });
    expect(hugeHeaders).toMatch(/\r\nContent-Type: application\/json\r\n/);
    for (const answer of [malformed, hugeHeaders]) expect(answer).toMatch(/\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n\r\n/);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toContain('tokenmint_http_requests_total{route="(unparsed)",method="unknown",status="408"} 2');
    expect(metrics).toContain('tokenmint_http_requests_total{route="(unparsed)",method="unknown",status="431"} 1');
    // Logged by code; nothing the clients sent (the token and key prefixes above), and no 500.
    const lines = server.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const refused = lines.filter((l) => l.route === '(unparsed)').map((l) => [l.status, l.reason]);
    expect(refused).toEqual(expect.arrayContaining([[408, 'ERR_HTTP_REQUEST_TIMEOUT'], [400, 'HPE_INVALID_METHOD'], [431, 'HPE_HEADER_OVERFLOW']]));
    // The renew whose body never came says so, not "bad JSON".
    expect(lines.find((l) => l.route === '/app/:app_id/renew')).toMatchObject({ status: 400, reason: 'body not received: connection closed' });
    expect(server.stdout()).not.toMatch(/eyJsecret|tmk_|"level":50/);
    expect(server.stdout()).not.toContain(String(appKey));
  });

  it('a request that names no URL (HTTP/1.1 without Host, a Host that is no host name, OPTIONS *) gets 400 as JSON; an HTTP/1.0 one without Host is served', async () => {
    const dir = tempDir();
    const server = await startServer(testEnv(dir), dir);
    const port = Number(new URL(server.url).port);
    const answers = await Promise.all(
      ['GET /healthz HTTP/1.1\r\nConnection: close', 'GET /healthz HTTP/1.1\r\nHost: a b\r\nConnection: close', 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close'].map((head) => rawExchange(port, `${head}\r\n\r\n`)),
    );
    for (const answer of answers) {
      expect(answer).toMatch(/^HTTP\/1.1 400 Bad Request\r\n/);
      expect(answer).toMatch(/\r\nContent-Type: application\/json\r\n/i);
      expect(answer).toMatch(/\r\nX-Content-Type-Options: nosniff\r\n/i);
      expect(answer.endsWith('\r\n\r\n{"message":"malformed request"}')).toBe(true);
    }
    // A load balancer's HTTP/1.0 health check is answered for the listening address.
    expect(await rawExchange(port, 'GET /healthz HTTP/1.0\r\n\r\n')).toMatch(/^HTTP\/1.1 200 OK\r\n[^]*\r\n\r\n\{"status":"ok"\}$/);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toContain('tokenmint_http_requests_total{route="(unparsed)",method="unknown",status="400"} 3');
    const lines = server.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.route === '(unparsed)').map((l) => l.reason).sort()).toEqual(['Invalid URL', 'Invalid URL', 'Missing host header']);
  });
});

describe('the request listener', () => {
  it('serves an HTTP/1.0 request without Host for the listening address, an IPv6 one (HOST=::) included', async () => {
    const h = await harness();
    for (const host of ['::', '0.0.0.0', '127.0.0.1']) {
      const server = http.createServer(requestListener(h.app.fetch, { logger: createLogger('silent'), metrics: undefined, https: false, defaultHostname: host }));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const answer = await rawExchange((server.address() as net.AddressInfo).port, 'GET /healthz HTTP/1.0\r\n\r\n');
      await new Promise((resolve) => server.close(resolve));
      // Until this version HOST=:: made it http://::/healthz, no URL: a 400.
      expect([host, answer.split('\r\n')[0], answer.split('\r\n\r\n')[1]]).toEqual([host, 'HTTP/1.1 200 OK', '{"status":"ok"}']);
    }
  });
});

/** Whether this machine can listen on IPv6 loopback (the HOST=:: test needs it). */
const hasIpv6 = await new Promise<boolean>((resolve) => {
  const probe = net.createServer().once('error', () => resolve(false));
  probe.listen(0, '::1', () => probe.close(() => resolve(true)));
});

describe.skipIf(!hasIpv6)('HOST=::', () => {
  it.each(['1', '2'])('the server (WORKERS=%s) announces a URL that works: http://[::]:port, not http://:::port', async (workers) => {
    const dir = tempDir();
    const server = await startServer(testEnv(dir, { HOST: '::', WORKERS: workers }), dir);
    expect(server.url).toMatch(/^http:\/\/\[::\]:\d+$/);
    expect(await (await fetch(`${server.url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect(await server.stop()).toBe(0);
  });
});

describe('the app-key limiter in a cluster', () => {
  it('counts the wrong keys every worker saw: after APP_KEY_FAILURE_LIMIT of them, spread over the workers, each answers 429, even to the right key', async () => {
    const dir = tempDir();
    const env = testEnv(dir, { WORKERS: '2', APP_KEY_FAILURE_LIMIT: '4' });
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme');
    const server = await startServer(env, dir);
    await until(() => server.stdout().split('\n').filter((l) => l.includes('"msg":"worker listening"')).length === 2);
    // Each on a new connection: node:cluster deals connections to the workers in turn.
    const issue = (key: string) =>
      new Promise<number>((resolve, reject) => {
        const request = http.request(`${server.url}/app/acme/issue`, { method: 'POST', agent: false, headers: { authorization: key, 'content-type': 'application/json' } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        request.on('error', reject);
        request.end(JSON.stringify({ sub: 'u', ...client }));
      });
    for (let i = 0; i < 4; i++) expect(await issue('tmk_wrong')).toBe(403);
    // Until this version, two failures on each worker blocked neither, and the right key got 200.
    await until(async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push(await issue(String(appKey)));
      return statuses.every((status) => status === 429);
    });
    // Both workers start the block; until this version each recorded it, and a block was in the
    // audit log up to WORKERS times (and as many times in the security log).
    const events = (await cliProcess(env, dir, 'audit', 'list', '--app', 'acme', '--json')) as unknown as Array<{ event: string }>;
    expect(events.filter((e) => e.event === 'security.app_key_blocked')).toHaveLength(1);
    expect(server.stdout().match(/"msg":"security\.app_key_blocked"/g)).toHaveLength(1);

    // A worker killed during the block: the one that replaces it takes the counts over from the
    // primary, which counts every relayed failure too. Until this version it knew nothing of the
    // block, and the requests it was dealt got 200 with the right key.
    const [killed] = childPids(server.child.pid!);
    process.kill(killed!, 'SIGKILL');
    await until(() => server.stdout().split('\n').filter((l) => l.includes('"msg":"worker listening"')).length === 3);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push(await issue(String(appKey)));
    expect(statuses).toEqual(Array(6).fill(429));
    expect(await server.stop('SIGTERM')).toBe(0);
  });
});

describe('keep-alive', () => {
  it('an idle keep-alive connection is closed after KEEP_ALIVE_TIMEOUT_SECONDS, not Node\'s 5 s', async () => {
    const dir = tempDir();
    const server = await startServer(testEnv(dir, { KEEP_ALIVE_TIMEOUT_SECONDS: '1' }), dir);
    const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
    const answered = new Promise<number>((resolve) => socket.once('data', () => resolve(performance.now())));
    const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(performance.now())));
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const idle = (await closed) - (await answered);
    expect(idle).toBeGreaterThanOrEqual(900);
    expect(idle).toBeLessThan(4000);
  });
});

describe('scheduled maintenance in a server process', () => {
  it('prunes on its own and says so in /metrics: rows pruned by kind, runs by result, the last success', async () => {
    const dir = tempDir();
    const env = testEnv(dir, { MAINTENANCE_INTERVAL_SECONDS: '0.25' });
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--refresh-ttl', '1', '--refresh-nbf', '0');
    const server = await startServer(env, dir);
    const started = Date.now() / 1000;
    expect((await post(`${server.url}/app/acme/issue`, { sub: 'u', ...client }, String(appKey))).status).toBe(200);

    // The token expires a second or two later (exp is in whole seconds); a run after that prunes it
    // and its session, which nothing can renew any more.
    const metric = (text: string, name: string) => Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    let text = '';
    for (let waited = 0; waited < 20_000 && !(metric(text, 'tokenmint_pruned_total{kind="refresh_token"}') >= 1); waited += 250) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      text = await (await fetch(`${server.url}/metrics`)).text();
    }
    expect(metric(text, 'tokenmint_pruned_total{kind="refresh_token"}')).toBe(1);
    expect(metric(text, 'tokenmint_pruned_total{kind="session"}')).toBe(1);
    expect(metric(text, 'tokenmint_pruned_total{kind="key"}')).toBe(0);
    expect(metric(text, 'tokenmint_maintenance_runs_total{result="ok"}')).toBeGreaterThanOrEqual(2);
    expect(text).not.toContain('tokenmint_maintenance_runs_total{result="failed"}');
    expect(metric(text, 'tokenmint_maintenance_duration_seconds_count')).toBeGreaterThanOrEqual(2);
    const lastSuccess = metric(text, 'tokenmint_maintenance_last_success_timestamp_seconds');
    expect(lastSuccess).toBeGreaterThan(started);
    expect(lastSuccess).toBeLessThanOrEqual(Date.now() / 1000);
    const db = new Database(env.DATABASE_URL!, { readonly: true });
    expect(db.prepare('SELECT (SELECT count(*) FROM sessions) + (SELECT count(*) FROM refresh_tokens)').pluck().get()).toBe(0);
    db.close();
  });
});

describe('scheduled key rotation across processes', () => {
  it('`key rotate --due` from two processes at once rotates exactly once', async () => {
    const dir = tempDir();
    // Due after 3 s; the two runs start together, far less than another 3 s apart.
    const env = testEnv(dir, { JWKS_MAX_AGE_SECONDS: '3' });
    await cliProcess(env, dir, 'app', 'create', 'acme', '--rotate-every', '3');
    await new Promise((resolve) => setTimeout(resolve, 3100));
    const runs = await Promise.all([cliProcess(env, dir, 'key', 'rotate', '--due'), cliProcess(env, dir, 'key', 'rotate', '--due')]);
    expect(runs.flatMap((r) => r.rotated as unknown[])).toHaveLength(1);
    const keys = (await cliProcess(env, dir, 'key', 'list', 'acme')) as unknown as Array<{ state: string }>;
    expect(keys.map((k) => k.state).sort()).toEqual(['current', 'next', 'retired']);
  });

  // WORKERS=2: the worker that runs the maintenance begins it once the primary has recorded the start.
  it.each(['1', '2'])('a running server (WORKERS=%s) carries out due rotations by itself, no cron, no restart', async (workers) => {
    const dir = tempDir();
    const env = testEnv(dir, { JWKS_MAX_AGE_SECONDS: '1', MAINTENANCE_INTERVAL_SECONDS: '0.2', WORKERS: workers });
    const { key_id: first } = await cliProcess(env, dir, 'app', 'create', 'acme', '--rotate-every', '1');
    const server = await startServer(env, dir);
    let keys: Array<{ kid: string; state: string }> = [];
    for (let i = 0; i < 50 && !keys.some((k) => k.kid === first && k.state === 'retired'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      keys = (await cliProcess(env, dir, 'key', 'list', 'acme')) as unknown as typeof keys;
    }
    expect(keys.find((k) => k.kid === first)?.state).toBe('retired');
    expect(keys.filter((k) => k.state === 'current')).toHaveLength(1);
    expect(server.stdout()).toContain('scheduled key rotation');
    if (workers === '1') return;
    // Every worker killed: the one the primary starts to run the maintenance is told to begin too.
    for (const pid of childPids(server.child.pid!)) process.kill(pid, 'SIGKILL');
    await until(() => (server.stdout().match(/"msg":"worker listening"/g)?.length ?? 0) >= 4);
    const rotations = () => server.stdout().match(/scheduled key rotation/g)?.length ?? 0;
    const before = rotations();
    await until(() => rotations() > before);
  });
});
