import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { canMountSmallDisk, client, fillDisk, onCleanup, smallDisk, tempDir, testEnv, type Pair } from './helpers.js';
import { childPids, cliProcess, serverEntry, startServer, until } from './processes.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function setup(extraEnv: Record<string, string> = {}) {
  const dir = tempDir();
  const env = testEnv(dir, extraEnv);
  const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--refresh-nbf', '0');
  const server = await startServer(env, dir);
  const post = (route: string, body: object) =>
    fetch(`${server.url}/app/acme/${route}`, { method: 'POST', headers: { authorization: String(appKey) }, body: JSON.stringify(body) });
  const issue = async (sub: string) => (await (await post('issue', { sub, ...client })).json()) as Pair;
  /** Takes SQLite's write lock from this (another) process until the returned function is called. */
  const holdWriteLock = () => {
    const db = new Database(String(env.DATABASE_URL));
    db.exec('BEGIN IMMEDIATE');
    return () => {
      db.exec('COMMIT');
      db.close();
    };
  };
  return { dir, env, appKey: String(appKey), server, post, issue, holdWriteLock };
}

describe('graceful shutdown', () => {
  it('on SIGTERM finishes the request in flight, closes the database and exits 0; then refuses connections', async () => {
    const { env, server, post, issue, holdWriteLock } = await setup();
    const pair = await issue('u');
    const release = holdWriteLock();
    const inFlight = post('renew', { refresh_token: pair.refresh_token, ...client });
    await sleep(150); // the renew now waits for the lock inside the server
    const started = Date.now();
    const exited = server.stop('SIGTERM');
    await sleep(150);
    release();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(await exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
    expect(server.stdout()).toContain('"msg":"closed"');
    // Closed cleanly: the WAL was checkpointed and removed, and the file is sound.
    const db = new Database(String(env.DATABASE_URL), { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
  });
});

describe('a second Ctrl-C', () => {
  it('while a renew waits out the stop: exits 130 at once, one process or a cluster (its workers killed), and the token renews on the next start', async () => {
    for (const workers of ['1', '2']) {
      const { dir, env, appKey, server, post, issue, holdWriteLock } = await setup({ WORKERS: workers, SHUTDOWN_TIMEOUT_SECONDS: '60' });
      const pair = await issue('u');
      const pids = [server.child.pid!, ...childPids(server.child.pid!)];
      const release = holdWriteLock();
      const inFlight = post('renew', { refresh_token: pair.refresh_token, ...client }).then((r) => r.status, () => 'no answer');
      await sleep(200); // the renew now waits for the lock inside the server

      server.child.kill('SIGINT');
      await sleep(300);
      expect(server.child.exitCode, workers).toBeNull(); // the first waits for the renew
      const started = Date.now();
      expect(await server.stop('SIGINT'), workers).toBe(130);
      expect(Date.now() - started).toBeLessThan(5_000); // not the 60 s of SHUTDOWN_TIMEOUT_SECONDS
      expect(await inFlight).toBe('no answer');
      expect(server.stdout()).toContain('interrupted again; exiting without waiting for in-flight requests');
      const running = (pid: number) => {
        try {
          return process.kill(pid, 0);
        } catch {
          return false;
        }
      };
      await until(() => !pids.some(running), 3000); // a killed worker may take a moment to be reaped
      release();

      // Nothing was half written: the same refresh token renews, once.
      const next = await startServer(env, dir);
      const renew = () => fetch(`${next.url}/app/acme/renew`, { method: 'POST', headers: { authorization: appKey }, body: JSON.stringify({ refresh_token: pair.refresh_token, ...client }) });
      expect((await renew()).status).toBe(200);
      expect(await next.stop('SIGTERM')).toBe(0);
    }
  });
});

describe('graceful shutdown with connections that hold no request being answered', () => {
  it('a client halfway through its request, or idle on keep-alive, does not hold SIGTERM: closed at once, exit 0, while a request being answered still gets its answer', async () => {
    const { server, post, issue, holdWriteLock } = await setup({ WORKERS: '2' });
    const pair = await issue('u');
    const { port } = new URL(server.url);
    const connect = (text: string) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(text));
      socket.on('error', () => {}).resume(); // read what comes, so that its end is seen
      return once(socket, 'close');
    };
    const halfHeaders = connect('POST /app/acme/renew HTTP/1.1\r\nHost: x\r\n');
    const idle = connect('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const release = holdWriteLock();
    const inFlight = post('renew', { refresh_token: pair.refresh_token, ...client });
    await sleep(200);

    const exited = server.stop('SIGTERM');
    await Promise.all([halfHeaders, idle]); // closed by the server, not by this test
    release();
    expect((await inFlight).status).toBe(200);
    expect(await exited).toBe(0);
    expect(server.stdout()).not.toContain('did not finish in time');
  });
});

describe('start-up', () => {
  it('a port already taken: exits 1 with a sentence, one process or a cluster (whose primary does not start worker after worker)', async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    onCleanup(() => taken.close());
    const port = (taken.address() as net.AddressInfo).port;
    for (const workers of ['1', '2']) {
      const dir = tempDir();
      const env = { PATH: process.env.PATH, ...testEnv(dir, { WORKERS: workers }), PORT: String(port) };
      const failed = await promisify(execFile)(process.execPath, [serverEntry], { cwd: dir, env, timeout: 15_000 }).catch((e: { code: number; stderr: string; killed: boolean }) => e);
      expect('code' in failed && [failed.code, failed.killed]).toEqual([1, false]);
      expect(failed.stderr).toContain(`tokenmint: cannot listen on 127.0.0.1:${port}: the address is in use (by another tokenmint, or another server)`);
    }
  });

  it.each(['1', '2'])('a start that cannot listen (WORKERS=%s) records nothing over the running server\'s start: the CLI still follows its JWKS max-age', async (workers) => {
    const dir = tempDir();
    const env = { ...testEnv(dir, { WORKERS: workers }), JWKS_MAX_AGE_SECONDS: '3600' };
    const running = await startServer(env, dir);
    const second = { PATH: process.env.PATH, ...env, PORT: new URL(running.url).port, JWKS_MAX_AGE_SECONDS: '60' };
    const failed = await promisify(execFile)(process.execPath, [serverEntry], { cwd: dir, env: second, timeout: 15_000 }).catch((e: { code: number }) => e);
    expect('code' in failed && failed.code).toBe(1);
    await cliProcess(env, dir, 'app', 'create', 'acme');
    const { JWKS_MAX_AGE_SECONDS: _, ...shell } = env;
    const rotated = await promisify(execFile)(process.execPath, [path.resolve('dist/cli/main.js'), 'key', 'rotate', 'acme', '--json'], { cwd: dir, env: { PATH: process.env.PATH, ...shell } });
    // Until this version the failed start had recorded its 60 s.
    expect(rotated.stderr).toMatch(/less than the JWKS cache lifetime \(3600 s\)/);
    expect(await running.stop()).toBe(0);
  });

  /** Starts a server while another process holds the database's write lock past the 5 s wait; resolves once it has exited. */
  async function startWhileLocked(extraEnv: Record<string, string>) {
    const dir = tempDir();
    const env = testEnv(dir, extraEnv);
    await cliProcess(env, dir, 'app', 'create', 'acme');
    const lock = new Database(String(env.DATABASE_URL));
    lock.exec('BEGIN IMMEDIATE');
    onCleanup(() => lock.close());
    const failed = await promisify(execFile)(process.execPath, [serverEntry], { cwd: dir, env: { PATH: process.env.PATH, ...env, PORT: '0' }, timeout: 20_000 }).catch((e: { code: number; stderr: string }) => e);
    lock.exec('ROLLBACK');
    return { env, lock, failed };
  }

  it.each(['1', '2'])('a database another process keeps locked past the 5 s wait (WORKERS=%s): the start ends (exit 1) with a sentence that says so, and records nothing', async (workers) => {
    const { env, lock, failed } = await startWhileLocked({ WORKERS: workers });
    expect('code' in failed && failed.code, failed.stderr).toBe(1);
    // Until this version: "tokenmint: SqliteError: database is locked" and a stack (WORKERS=1), or nothing on stderr (a cluster).
    expect(failed.stderr).toBe(
      `tokenmint: the database ${env.DATABASE_URL} could not be written: database is locked (SQLITE_BUSY); the transaction under way was rolled back; another process held its write lock for over 5 s (a backup, another long command, an sqlite3 shell with a transaction open). Start the server again once that is fixed\n`,
    );
    expect(lock.prepare('SELECT count(*) AS n FROM server_settings').get()).toEqual({ n: 0 });
  });

  it('a cluster whose start failed exits 1 also when its workers\' channels close after they exit (as Node allows)', async () => {
    // Until this version the primary looked for workers left only when one exited; a worker whose
    // channel was still open then was still listed, and the primary ended later, when nothing was
    // left to do, with status 0: a supervisor saw a clean stop (seen once in a full test run).
    const { failed } = await startWhileLocked({ WORKERS: '2', NODE_OPTIONS: `--import ${path.resolve('test/hold-worker-channel.mjs')}` });
    expect('code' in failed && failed.code, failed.stderr).toBe(1);
    expect(failed.stderr).toMatch(/^tokenmint: the database .* could not be written: database is locked/);
  });

  it('a cluster records its start only once it holds the port: another process cannot take the port after the record', async () => {
    // Until this version the primary tried the port, let it go, recorded, then forked the workers,
    // which took it again: a process that took the port in between failed the start after its record.
    const dir = tempDir();
    const env = testEnv(dir, { WORKERS: '2' });
    const free = net.createServer().listen(0, '127.0.0.1');
    await once(free, 'listening');
    const port = (free.address() as net.AddressInfo).port;
    await new Promise((resolve) => free.close(resolve));
    const child = spawn(process.execPath, [serverEntry], { cwd: dir, env: { PATH: process.env.PATH, ...env, PORT: String(port) }, stdio: 'ignore' });
    const exited = once(child, 'exit');
    onCleanup(() => child.kill('SIGKILL'));
    const recorded = () => {
      try {
        const db = new Database(String(env.DATABASE_URL), { readonly: true, fileMustExist: true });
        try {
          return db.prepare('SELECT count(*) AS n FROM server_settings').get() as { n: number };
        } finally {
          db.close();
        }
      } catch {
        return { n: 0 }; // not made or not migrated yet
      }
    };
    const deadline = Date.now() + 15_000;
    while (recorded().n === 0 && Date.now() < deadline) await sleep(2); // until() looks only every 100 ms
    // The moment the record is there, take the port.
    const intruder = net.createServer();
    const taken = await new Promise<string>((resolve) => {
      intruder.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
      intruder.listen(port, '127.0.0.1', () => resolve('taken'));
    });
    onCleanup(() => intruder.close());
    expect(taken).toBe('EADDRINUSE');
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    child.kill('SIGTERM');
    expect((await exited)[0]).toBe(0);
  });
});

describe('contention with other processes', () => {
  it('renews wait out another process\'s write lock (SQLITE_BUSY is retried), never a 500', async () => {
    const { dir, env, server, post, issue, holdWriteLock } = await setup();
    const pairs = await Promise.all(Array.from({ length: 20 }, (_, i) => issue(`u${i}`)));
    const release = holdWriteLock();
    const renews = pairs.map((p) => post('renew', { refresh_token: p.refresh_token, ...client }));
    await sleep(300);
    // The waiting renews do not block the process: it still answers what needs no write lock.
    const health = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(200) });
    expect(health.status).toBe(200);
    await sleep(700);
    release();
    expect((await Promise.all(renews)).map((r) => r.status)).toEqual(Array(20).fill(200));

    // And with the CLI writing at the same time as a stream of renews.
    let tokens = (await Promise.all(pairs.map((p) => post('issue', { sub: p.key_id, ...client })))).length;
    const chains = pairs.slice(0, 5).map(async () => {
      let token = (await issue('chain')).refresh_token;
      for (let i = 0; i < 20; i++) {
        const res = await post('renew', { refresh_token: token, ...client });
        expect(res.status).toBe(200);
        token = ((await res.json()) as Pair).refresh_token;
        tokens++;
      }
    });
    const admin = (async () => {
      for (let i = 0; i < 3; i++) await cliProcess(env, dir, 'key', 'rotate', 'acme');
      await cliProcess(env, dir, 'app', 'update', 'acme', '--access-ttl', '1800');
    })();
    await Promise.all([...chains, admin]);
    expect(tokens).toBeGreaterThan(100);
  });

  it('a write lock held past the 5 s wait: issue and renew answer 500 "internal error" and write nothing; the same token renews afterwards', async () => {
    const { server, post, issue, holdWriteLock } = await setup();
    const pair = await issue('u');
    const release = holdWriteLock();
    const started = Date.now();
    const [renew, newSession] = await Promise.all([post('renew', { refresh_token: pair.refresh_token, ...client }), post('issue', { sub: 'v', ...client })]);
    release();
    expect(Date.now() - started).toBeGreaterThanOrEqual(5000);
    for (const res of [renew, newSession]) {
      expect(res.status).toBe(500);
      expect(await res.json()).toEqual({ message: 'internal error' });
    }
    // The renew that failed used nothing: its token renews now, once, and is not taken for reuse.
    const renewed = await post('renew', { refresh_token: pair.refresh_token, ...client });
    expect(renewed.status).toBe(200);
    const next = (await renewed.json()) as Pair;
    expect((await post('renew', { refresh_token: next.refresh_token, ...client })).status).toBe(200);
    // Logged as an error, with no token in it.
    const errors = server.stdout().split('\n').filter((line) => line.includes('"unhandled error"')).map((line) => JSON.parse(line).error);
    expect(errors).toEqual([0, 1].map(() => expect.objectContaining({ type: 'SqliteError', code: 'SQLITE_BUSY', message: 'database is locked' })));
    expect(server.stdout()).not.toContain(pair.refresh_token.split('.')[1]);
  });
});

describe('the database file taken from under a running server', () => {
  /**
   * The exit code once the process has exited by itself and its output is all read ('close', not
   * 'exit', which may come before the last of it), or 'still running' after `ms`.
   */
  const exitWithin = (server: { child: ChildProcess }, ms: number) =>
    new Promise<number | string | null>((resolve) => {
      server.child.once('close', (code) => resolve(code));
      setTimeout(() => resolve('still running'), ms);
    });

  it('a backup restored over it: a cluster stops as a whole (exit 1, no worker started again), saying once which file, that its -wal and -shm belong to the old one, and what to do', async () => {
    // A worker that opens the file after the rename (still starting, on a busy machine) opens the
    // new one; the primary's watch stops the cluster all the same.
    const { dir, env, server, issue } = await setup({ WORKERS: '2' });
    expect((await issue('u')).refresh_token).toBeTruthy();
    const file = String(env.DATABASE_URL);
    const copy = path.join(dir, 'restore.db');
    await cliProcess(env, dir, 'backup', copy);
    fs.renameSync(copy, file);
    expect(await exitWithin(server, 8000)).toBe(1);
    expect(server.stderr().split(`tokenmint: the database file ${file} was replaced by another file while tokenmint had it open; stopping`)).toHaveLength(2);
    expect(server.stderr()).toContain(`The ${file}-wal and -shm files beside it belong to the file that was there before`);
    expect(server.stdout()).toContain('"change":"replaced"');
    expect(server.stdout()).not.toContain('starting another');
  });

  it('a shutdown for another reason ends the watch: files removed while requests finish are not taken for a vanished database (exit 0)', async () => {
    const { env, server, post, issue, holdWriteLock } = await setup();
    const pair = await issue('u');
    const release = holdWriteLock();
    const inFlight = post('renew', { refresh_token: pair.refresh_token, ...client });
    await sleep(150);
    const exited = server.stop('SIGTERM');
    fs.rmSync(String(env.DATABASE_URL)); // as a test's or a script's clean-up may, once it has asked for the stop
    await sleep(1500); // more than the watch's second
    release();
    expect((await inFlight).status).toBe(200);
    expect(await exited).toBe(0);
    expect(server.stderr()).not.toContain('was deleted');
  });

  it('deleted, or its folder moved: the server stops (exit 1) and says so', async () => {
    const { env, server, issue } = await setup();
    expect((await issue('u')).refresh_token).toBeTruthy();
    const file = String(env.DATABASE_URL);
    fs.rmSync(file);
    expect(await exitWithin(server, 8000)).toBe(1);
    expect(server.stderr()).toContain(`tokenmint: the database file ${file} was deleted (or its folder moved) while tokenmint had it open; stopping`);
    expect(server.stdout()).toContain('"change":"deleted"');
  });
});

describe('a full disk under a running server (where this user may mount a small tmpfs: root, as CI is)', () => {
  it.skipIf(!canMountSmallDisk())('issues answer 500 once the disk is full, and write nothing; the server stays up; with room again every session answered 200 renews and new ones start; the file is sound', async () => {
    const disk = smallDisk('2m')!;
    const { env, server, post } = await setup({ DATABASE_URL: path.join(disk, 'tokenmint.db') });
    const bulky = { ip: client.ip, useragent: 'x'.repeat(1000) }; // fills the disk sooner

    // 16 at a time, so that the server commits them in batches (group commit). In WAL mode a batch's
    // pages go to the WAL at its commit, so on a real disk it is the commit that fails, and a batch
    // is stored or refused whole.
    const issued: Pair[] = [];
    let fullRounds = 0;
    for (let round = 0; round < 400 && fullRounds < 3; round++) {
      const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => post('issue', { sub: `u${round}-${i}`, ...bulky })));
      let ok = 0;
      for (const res of answers) {
        if (res.status === 200) {
          issued.push((await res.json()) as Pair);
          ok++;
        } else {
          expect([res.status, await res.json()]).toEqual([500, { message: 'internal error' }]);
        }
      }
      fullRounds = ok === 0 ? fullRounds + 1 : 0;
    }
    expect(fullRounds).toBe(3); // the disk did fill
    expect(issued.length).toBeGreaterThan(20);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect(server.stdout()).toContain('"code":"SQLITE_FULL"');

    execFileSync('mount', ['-o', 'remount,size=16m', disk]); // room again, as when an operator frees some
    const renewed = await Promise.all(issued.map((p) => post('renew', { refresh_token: p.refresh_token, ...client })));
    expect(renewed.map((r) => r.status)).toEqual(issued.map(() => 200));
    expect((await post('issue', { sub: 'after', ...client })).status).toBe(200);
    expect(await server.stop('SIGTERM')).toBe(0);

    // Every session answered 200 is stored, and nothing answered 500 is: one session each, and one more.
    const db = new Database(String(env.DATABASE_URL), { readonly: true });
    onCleanup(() => db.close());
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(db.prepare('SELECT count(*) FROM sessions').pluck().get()).toBe(issued.length + 1);
  });

  it.skipIf(!canMountSmallDisk())('the CLI on a full disk says so: the kill switch refused and rolled back, then carried out once there is room; a file it cannot even open, nor a server start on', async () => {
    const disk = smallDisk('2m')!;
    const file = path.join(disk, 'tokenmint.db');
    const { dir, env, server, post, issue } = await setup({ DATABASE_URL: file });
    const cli = (...args: string[]) => cliProcess(env, dir, ...args).catch((e: { code: number; stderr: string }) => e);
    const fullDisk = `the disk holding ${disk} has 0 KB free: make room on it`;
    const pairs = await Promise.all(['a', 'b', 'c'].map((sub) => issue(sub)));

    // The server has the file open; the disk fills.
    fillDisk(disk);
    const refused = await cli('session', 'revoke', 'acme', '--all');
    expect('code' in refused && refused.code).toBe(1); // until this version: 70, "unexpected error"
    expect(refused.stderr).toContain(
      `tokenmint: the database ${file} could not be written: database or disk is full (SQLITE_FULL); the transaction under way was rolled back; ${fullDisk}. Run the command again once that is fixed`,
    );
    fs.rmSync(path.join(disk, 'filler'));
    expect(await cli('session', 'revoke', 'acme', '--all')).toEqual({ revoked: 3 });
    for (const pair of pairs) expect((await post('renew', { refresh_token: pair.refresh_token, ...client })).status).toBe(401);
    expect(await server.stop('SIGTERM')).toBe(0);

    // No process has it open: SQLite cannot even make its -shm file, and says "disk I/O error".
    fillDisk(disk);
    const unopened = await cli('app', 'list');
    expect('code' in unopened && unopened.code).toBe(1);
    expect(unopened.stderr).toContain(`tokenmint: cannot open the database ${file}: disk I/O error; ${fullDisk}`);
    // And so does a server started there.
    const start = await promisify(execFile)(process.execPath, [serverEntry], { cwd: dir, env: { PATH: process.env.PATH, ...env, PORT: '0' }, timeout: 15_000 }).catch((e: { code: number; stderr: string }) => e);
    expect('code' in start && start.code).toBe(1);
    expect(start.stderr).toContain(`tokenmint: cannot open the database ${file}: disk I/O error; ${fullDisk}`);
  });
});
