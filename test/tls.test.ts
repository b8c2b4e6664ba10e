import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import tls from 'node:tls';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { loadTlsPair, warnIfExpiring } from '../src/http/tls.js';
import { createLogger } from '../src/log.js';
import { client, tempDir, testEnv, verifyIndependently, type Pair } from './helpers.js';
import { childPids, cliProcess, serverEntry, startServer, until } from './processes.js';

/** A self-signed P-256 certificate for 127.0.0.1 made by the openssl CLI, as an operator would. */
function certificate(dir: string, name: string, days = 30): { cert: string; key: string; pem: string } {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1', '-days', String(days), '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key, pem: fs.readFileSync(cert, 'utf8') };
}

/** POST over HTTPS trusting only `ca`; the status and parsed JSON. */
function post(url: string, body: unknown, appKey: string, ca: string): Promise<{ status: number; json: unknown; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: 'POST', ca, headers: { authorization: appKey, 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d)).on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text), headers: res.headers }));
    });
    req.on('error', reject).end(JSON.stringify(body));
  });
}

/** The CN of the certificate the server presents to a new connection that trusts `ca`. */
function presentedName(port: number, ca: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca }, () => {
      resolve(String(socket.getPeerCertificate().subject.CN));
      socket.end();
    });
    socket.on('error', reject);
  });
}

const portOf = (url: string) => Number(new URL(url).port);

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false; // .ci/run installs it; a developer machine without it skips these
  }
})();

describe.skipIf(!hasOpenssl)('HTTPS (TLS_CERT_FILE, TLS_KEY_FILE)', () => {
  it('a cluster serves the API over HTTPS: a pair issued and renewed verifies, with HSTS; plain HTTP on that port gets no answer', async () => {
    const dir = tempDir();
    const one = certificate(dir, 'one');
    const env = testEnv(dir, { WORKERS: '2', TLS_CERT_FILE: 'one.crt', TLS_KEY_FILE: 'one.key' }); // relative to the folder, like DATABASE_URL
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--refresh-nbf', '0');
    const server = await startServer(env, dir);
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const issued = await post(`${server.url}/app/acme/issue`, { sub: 'u', ...client }, String(appKey), one.pem);
    expect(issued.status).toBe(200);
    const renewed = await post(`${server.url}/app/acme/renew`, { refresh_token: (issued.json as Pair).refresh_token, ...client }, String(appKey), one.pem);
    expect(renewed.status).toBe(200);
    const pair = renewed.json as Pair;
    expect(verifyIndependently(pair.auth_token, pair.public_key).payload).toMatchObject({ sub: 'u' });
    // Served over HTTPS by tokenmint itself: HSTS, beside the headers every answer has.
    expect(renewed.headers).toMatchObject({ 'strict-transport-security': 'max-age=31536000', 'x-content-type-options': 'nosniff' });
    // Not HTTP: whatever a plain client gets, it is no answer of the API.
    const plain = await fetch(server.url.replace('https:', 'http:') + '/healthz').then((r) => r.status, (e: Error) => e.message);
    expect(plain).not.toBe(200);
    expect(await server.stop('SIGTERM')).toBe(0);
  });

  it('a renewed certificate is served to new connections within seconds, with no restart; a key that does not fit yet keeps the old one', async () => {
    const dir = tempDir();
    const [one, two] = [certificate(dir, 'one'), certificate(dir, 'two', 5)];
    const [certFile, keyFile] = [path.join(dir, 'live.crt'), path.join(dir, 'live.key')];
    fs.copyFileSync(one.cert, certFile);
    fs.copyFileSync(one.key, keyFile);
    // One worker (each worker of a cluster runs this same code; the announcement comes once the first listens).
    const server = await startServer(testEnv(dir, { TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile }), dir);
    const port = portOf(server.url);
    const trusted = [one.pem, two.pem];
    expect(await presentedName(port, trusted)).toBe('one');

    // Half a renewal: the new certificate, the old key. The server says so and goes on with "one".
    fs.copyFileSync(two.cert, certFile);
    const lines = () => server.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    await until(() => lines().some((l) => l.msg === 'TLS certificate not reloaded; still serving the previous one'));
    expect(lines().find((l) => l.error)?.error).toBe(`the private key in ${keyFile} is not the one of the certificate in ${certFile}`);
    for (let i = 0; i < 4; i++) expect(await presentedName(port, trusted)).toBe('one');

    fs.copyFileSync(two.key, keyFile);
    await until(async () => (await Promise.all([1, 2, 3, 4].map(() => presentedName(port, trusted)))).every((name) => name === 'two'));
    const reloaded = lines().filter((l) => l.msg === 'TLS certificate reloaded');
    expect(reloaded.map((l) => l.subject)).toEqual(['CN=two']);
    // Five days left: under the 14 that are warned of.
    expect(lines().filter((l) => l.msg === 'TLS certificate expires soon').map((l) => l.days_left)).toEqual([4]);
    expect(server.stdout()).not.toContain('PRIVATE KEY');
    expect(await server.stop('SIGTERM')).toBe(0);
  });

  it('a cluster whose worker dies while the pair is half renewed serves on with the other; the new worker starts once the pair fits', async () => {
    const dir = tempDir();
    const [one, two] = [certificate(dir, 'one'), certificate(dir, 'two')];
    const [certFile, keyFile] = [path.join(dir, 'live.crt'), path.join(dir, 'live.key')];
    fs.copyFileSync(one.cert, certFile);
    fs.copyFileSync(one.key, keyFile);
    const server = await startServer(testEnv(dir, { WORKERS: '2', TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile }), dir);
    const port = portOf(server.url);
    const trusted = [one.pem, two.pem];
    const lines = () => server.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const listening = () => lines().filter((l) => l.msg === 'worker listening');
    await until(() => listening().length === 2);

    fs.copyFileSync(two.cert, certFile); // the new certificate, the old key still
    process.kill(childPids(server.child.pid!)[0]!, 'SIGKILL');
    await until(() => lines().some((l) => l.msg === 'a new worker could not start; the others serve on; trying again'));
    await until(() => server.stderr().includes(`the private key in ${keyFile} is not the one of the certificate in ${certFile}`)); // the worker's stderr, another pipe
    for (let i = 0; i < 4; i++) expect(await presentedName(port, trusted)).toBe('one');

    fs.copyFileSync(two.key, keyFile);
    await until(() => listening().length === 3, 15_000);
    await until(async () => (await Promise.all([1, 2, 3, 4].map(() => presentedName(port, trusted)))).every((name) => name === 'two'));
    expect(server.child.exitCode).toBeNull();
    expect(await server.stop('SIGTERM')).toBe(0);
  });

  it('SIGTERM: a connection stuck before its handshake and an idle one are closed at once; a renew being answered still gets its answer; exit 0', async () => {
    const dir = tempDir();
    const one = certificate(dir, 'one');
    const env = testEnv(dir, { TLS_CERT_FILE: one.cert, TLS_KEY_FILE: one.key });
    const { app_key: appKey } = await cliProcess(env, dir, 'app', 'create', 'acme', '--refresh-nbf', '0');
    const server = await startServer(env, dir);
    const pair = (await post(`${server.url}/app/acme/issue`, { sub: 'u', ...client }, String(appKey), one.pem)).json as Pair;
    const closed = (socket: net.Socket) => new Promise((resolve) => socket.on('error', () => {}).on('close', resolve).resume());
    const stuck = net.connect(portOf(server.url), '127.0.0.1'); // connected, and never says hello
    const idle = tls.connect({ host: '127.0.0.1', port: portOf(server.url), ca: one.pem }, () => idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
    const [stuckClosed, idleClosed] = [closed(stuck), closed(idle)];
    // Another process holds the write lock: the renew waits inside the server.
    const lock = new Database(String(env.DATABASE_URL));
    lock.exec('BEGIN IMMEDIATE');
    const inFlight = post(`${server.url}/app/acme/renew`, { refresh_token: pair.refresh_token, ...client }, String(appKey), one.pem);
    await new Promise((resolve) => setTimeout(resolve, 300));

    const exited = server.stop('SIGTERM');
    await Promise.all([stuckClosed, idleClosed]); // by the server, not by this test
    lock.exec('COMMIT');
    lock.close();
    expect((await inFlight).status).toBe(200);
    expect(await exited).toBe(0);
    expect(server.stdout()).not.toContain('did not finish in time');
  });

  it('a certificate near or past its end is logged: a warning within 14 days, an error once expired; never a key', () => {
    const one = certificate(tempDir(), 'one', 30);
    const lines: string[] = [];
    const logger = createLogger('info', new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }));
    const { certificate: x509 } = loadTlsPair({ certFile: one.cert, keyFile: one.key });
    const day = 86_400_000;
    for (const daysFromNow of [0, 20, 40]) warnIfExpiring(x509, logger, Date.now() + daysFromNow * day);
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged.map((l) => [l.level, l.msg, l.days_left])).toEqual([
      [40, 'TLS certificate expires soon', 9],
      [50, 'TLS certificate has expired: clients will refuse it', undefined],
    ]);
    expect(logged[1]).toMatchObject({ subject: 'CN=one', fingerprint256: x509.fingerprint256 });
    expect(lines.join('')).not.toContain('PRIVATE');
  });

  it('a start that cannot serve HTTPS ends with a sentence, exit 1, a cluster once: one variable of the two, a missing file, a key of another certificate', async () => {
    const dir = tempDir();
    const [one, two] = [certificate(dir, 'one'), certificate(dir, 'two')];
    const cases: Array<[Record<string, string>, string]> = [
      [{ TLS_CERT_FILE: one.cert }, 'TLS_KEY_FILE: required with TLS_CERT_FILE (HTTPS needs both, plain HTTP neither)'],
      [{ TLS_KEY_FILE: one.key }, 'TLS_CERT_FILE: required with TLS_KEY_FILE'],
      [{ TLS_CERT_FILE: path.join(dir, 'none.crt'), TLS_KEY_FILE: one.key }, `tokenmint: cannot serve HTTPS: ENOENT: no such file or directory, open '${path.join(dir, 'none.crt')}'`],
      [{ TLS_CERT_FILE: one.key, TLS_KEY_FILE: one.key }, `tokenmint: cannot serve HTTPS: ${one.key} holds no PEM certificate`],
      // Until this version: "EISDIR: illegal operation on a directory, read", naming no file.
      [{ TLS_CERT_FILE: one.cert, TLS_KEY_FILE: dir }, `tokenmint: cannot serve HTTPS: ${dir} is a folder, not a PEM file`],
      [{ TLS_CERT_FILE: one.cert, TLS_KEY_FILE: two.key }, `tokenmint: cannot serve HTTPS: the private key in ${two.key} is not the one of the certificate in ${one.cert}`],
    ];
    for (const workers of ['1', '2']) {
      for (const [extra, sentence] of cases) {
        const failed = await promisify(execFile)(process.execPath, [serverEntry], { cwd: dir, env: { PATH: process.env.PATH, ...testEnv(dir, { WORKERS: workers, PORT: '0', ...extra }) } }).catch((e: { code: number; stderr: string }) => e);
        expect('code' in failed && failed.code).toBe(1);
        expect(failed.stderr).toContain(sentence);
        expect(failed.stderr.split(sentence).length - 1).toBe(1); // said once, not by every worker
        expect(failed.stderr).not.toMatch(/\n\s+at /);
      }
    }
  });
});
