import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkOidcSample, checkPairs, checkSample } from './check.js';
import type { RenewTarget } from './load.js';
import { startNode, type Server } from './proc.js';

export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const REUSE_GRACE_SECONDS = 1;
export const user = { ip: '203.0.113.7', useragent: 'tokenmint-bench/1.0' };

export interface Started {
  server: Server;
  target: RenewTarget;
  /** Opens `n` sessions; resolves to their refresh tokens. */
  open(n: number): Promise<string[]>;
  /** Where its data lives (removed by the caller). */
  dir: string;
  /** Checks sampled answers (see check.ts); resolves to how many were checked. */
  check(sample: Array<[string, unknown]>): Promise<number>;
}

const post = async (url: string, headers: Record<string, string>, body: unknown) => {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return res.json() as Promise<Record<string, string>>;
};

/** In batches, so opening many sessions does not open as many sockets. */
async function openMany(n: number, open: () => Promise<string>): Promise<string[]> {
  const tokens: string[] = [];
  while (tokens.length < n) tokens.push(...(await Promise.all(Array.from({ length: Math.min(64, n - tokens.length) }, open))));
  return tokens;
}

/** Where the bench's tokenmint whose data lives in `dir` finds its database and master key. */
export const tokenmintEnv = (dir: string) => ({ DATABASE_URL: path.join(dir, 'tokenmint.db'), TOKENMINT_MASTER_KEY: fs.readFileSync(path.join(dir, 'master'), 'utf8') });

/** tokenmint as users run it: the built server (`npm start` without the build), on a fresh database (or on `existingDir`'s). */
export async function startTokenmint(extraEnv: Record<string, string> = {}, existingDir?: string): Promise<Started & { appKey: string }> {
  const dir = existingDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tokenmint-bench-'));
  if (!existingDir) fs.writeFileSync(path.join(dir, 'master'), randomBytes(32).toString('base64'));
  const env = { ...tokenmintEnv(dir), ...extraEnv };
  let appKey: string;
  if (existingDir) {
    appKey = fs.readFileSync(path.join(dir, 'app-key'), 'utf8');
  } else {
    const created = JSON.parse(
      execFileSync(process.execPath, [path.join(root, 'dist/cli/main.js'), 'app', 'create', 'bench', '--refresh-nbf', '0', '--reuse-grace', String(REUSE_GRACE_SECONDS), '--json'], { env: { PATH: process.env.PATH, ...env }, cwd: dir }).toString(),
    ) as { app_key: string };
    appKey = created.app_key;
    fs.writeFileSync(path.join(dir, 'app-key'), appKey);
  }
  const server = await startNode(path.join(root, 'dist/server.js'), { ...env, PORT: '0' }, dir);
  const headers = { authorization: appKey, 'content-type': 'application/json' };
  const target: RenewTarget = {
      name: 'tokenmint',
      origin: server.origin,
      request: (token) => ({ path: '/app/bench/renew', headers, body: JSON.stringify({ refresh_token: token, ...user }) }),
      nextToken: (answer) => (answer as { refresh_token: string }).refresh_token,
  };
  return {
    dir,
    server,
    appKey,
    target,
    check: (sample) => checkSample(target, sample, REUSE_GRACE_SECONDS),
    open: (n) => openMany(n, async () => (await post(`${server.origin}/app/bench/issue`, { authorization: appKey }, { sub: `user-${randomBytes(4).toString('hex')}`, ...user })).refresh_token!),
  };
}

/**
 * A one-file server of bench/ with tokenmint's renew body and answer, on a fresh folder: POST /issue
 * opens a session, POST /renew renews.
 */
async function startPlainRenew(name: string, script: string, env: (dir: string) => Record<string, string>, check: (target: RenewTarget, sample: Array<[string, unknown]>) => Promise<number>): Promise<Started> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${script.replace(/\.js$/, '')}-`));
  const server = await startNode(path.join(root, 'dist-bench', script), { ...env(dir), PORT: '0' }, dir);
  const target: RenewTarget = {
    name,
    origin: server.origin,
    request: (token) => ({ path: '/renew', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: token, ...user }) }),
    nextToken: (answer) => (answer as { refresh_token: string }).refresh_token,
  };
  return {
    dir,
    server,
    target,
    check: (sample) => check(target, sample),
    open: (n) => openMany(n, async () => (await post(`${server.origin}/issue`, {}, {})).refresh_token!),
  };
}

/** The bare renew: same stack, no features. */
export const startBare = () => startPlainRenew('bare renew', 'bare-server.js', (dir) => ({ BARE_DB: path.join(dir, 'bare.db') }), (target, sample) => checkSample(target, sample, 0));

/** The ceiling (see ceiling-server.ts): HTTP and two ES256 signatures per renew, nothing else. It refuses nothing, so only the pairs are checked. */
export const startCeiling = () => startPlainRenew('ceiling', 'ceiling-server.js', () => ({}), async (target, sample) => checkPairs(target, sample));

/** The peer: oidc-provider's refresh_token grant, rotation on, ES256. */
export async function startOidcProvider(): Promise<Started> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oidc-bench-'));
  const server = await startNode(path.join(root, 'dist-bench/oidc-server.js'), { PORT: '0' }, dir);
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  const secret = 'bench-secret-bench-secret-bench-secret';
  const target: RenewTarget = {
    name: 'oidc-provider',
    origin: server.origin,
    request: (token) => ({
      path: '/token',
      headers,
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token, client_id: 'bench', client_secret: secret }).toString(),
    }),
    nextToken: (answer) => (answer as { refresh_token: string }).refresh_token,
  };
  return {
    dir,
    server,
    target,
    check: (sample) => checkOidcSample(target, sample),
    open: (n) => openMany(n, async () => (await post(`${server.origin}/bench/mint`, {}, {})).refresh_token!),
  };
}
