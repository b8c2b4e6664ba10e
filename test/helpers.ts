import { execFileSync } from 'node:child_process';
import { createPublicKey, randomBytes, verify as cryptoVerify } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach } from 'vitest';
import { appKeyLimits, createAppKeyLimiter } from '../src/http/app-key-limiter.js';
import { createApp } from '../src/http/app.js';
import { loadConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createMetrics, type Metrics } from '../src/metrics.js';
import { openTokenmint, type Tokenmint } from '../src/tokenmint.js';
import type { AppSettings } from '../src/storage/repository.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});
export const onCleanup = (fn: () => unknown) => cleanups.push(fn);

export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenmint-test-'));
  onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A tmpfs of `size` (as mount takes it: '16k', '2m') mounted at a new folder and unmounted after the
 * test, for tests of a full disk; undefined where this process may not mount one.
 */
export function smallDisk(size: string): string | undefined {
  const disk = path.join(tempDir(), 'disk');
  fs.mkdirSync(disk);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', disk], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  onCleanup(() => execFileSync('umount', [disk]));
  return disk;
}

let mountable: boolean | undefined;
/** Whether this process may mount a tmpfs (root, with the right to mount: CI's case). */
export function canMountSmallDisk(): boolean {
  if (mountable === undefined) {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenmint-mount-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', folder], { stdio: 'ignore' });
      execFileSync('umount', [folder]);
      mountable = true;
    } catch {
      mountable = false;
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  }
  return mountable;
}

/** Fills the disk holding `folder` (a file written until there is no room left). */
export function fillDisk(folder: string): void {
  try {
    fs.writeFileSync(path.join(folder, 'filler'), Buffer.alloc(64 * 1024 * 1024));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  }
}

/** A clock the test moves by hand (milliseconds). */
export function manualClock(start = Date.parse('2026-06-01T12:00:00Z')) {
  let now = start;
  const clock = () => now;
  clock.advance = (seconds: number) => {
    now += seconds * 1000;
  };
  return clock;
}
export type ManualClock = ReturnType<typeof manualClock>;

/** One server process unless a test asks for a cluster (WORKERS defaults to the number of cores). */
export function testEnv(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { DATABASE_URL: path.join(dir, 'tokenmint.db'), TOKENMINT_MASTER_KEY: randomBytes(32).toString('base64'), WORKERS: '1', ...extra };
}

export interface Harness {
  dir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  tm: Tokenmint;
  app: ReturnType<typeof createApp>;
  limiter: ReturnType<typeof createAppKeyLimiter>;
  clock: ManualClock;
  /** Every log line written so far, parsed. */
  logs: Array<Record<string, unknown>>;
  rawLogs: () => string;
  createApp: (appId?: string, settings?: Partial<AppSettings>) => Promise<{ appId: string; appKey: string; kid: string }>;
  post: (path: string, body: unknown, appKey?: string, headers?: Record<string, string>) => Promise<Response>;
}

/** The real HTTP app over a real SQLite file in a temp folder, with a manual clock and captured logs. */
export async function harness(options: { env?: Record<string, string>; clock?: ManualClock } = {}): Promise<Harness> {
  const dir = tempDir();
  const env = testEnv(dir, options.env);
  const config = loadConfig(env, dir);
  const clock = options.clock ?? manualClock();
  let raw = '';
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      raw += chunk.toString();
      for (const line of chunk.toString().split('\n')) if (line.trim()) logs.push(JSON.parse(line));
      done();
    },
  });
  const logger = createLogger('info', sink);
  let metrics: Metrics | undefined;
  const tm = openTokenmint(config, { clock, logger, onAuditEvent: (event, fields) => metrics?.onAuditEvent(event, fields) });
  metrics = createMetrics(tm.repo);
  onCleanup(() => tm.close());
  const limiter = createAppKeyLimiter({
    ...appKeyLimits(config),
    clock,
  });
  const app = createApp({ ...tm, limiter, logger, metrics, config });
  let counter = 0;
  return {
    dir,
    config,
    env,
    tm,
    app,
    limiter,
    clock,
    logs,
    rawLogs: () => raw,
    createApp: (appId = `app${++counter}`, settings = {}) => tm.apps.create(appId, settings),
    post: async (p, body, appKey, headers = {}) =>
      app.request(p, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(appKey ? { authorization: appKey } : {}), ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
  };
}

export const client = { ip: '203.0.113.7', useragent: 'Mozilla/5.0 (test)' };

export interface Pair {
  auth_token: string;
  refresh_token: string;
  key_id: string;
  public_key: string;
}

export const decodePart = (token: string, index: 0 | 1) =>
  JSON.parse(Buffer.from(token.split('.')[index]!, 'base64url').toString('utf8')) as Record<string, unknown>;

/**
 * An independent ES256 check with node:crypto (not jose, not our code): the signature over
 * header.payload with the given base64 PEM, header alg/typ/kid. Returns header and payload.
 */
export function verifyIndependently(token: string, publicKeyBase64: string) {
  const [h, p, s] = token.split('.');
  const key = createPublicKey(Buffer.from(publicKeyBase64, 'base64').toString('utf8'));
  const ok = cryptoVerify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s!, 'base64url'));
  if (!ok) throw new Error('signature does not verify');
  return { header: decodePart(token, 0), payload: decodePart(token, 1) };
}

/** Forges a compact JWS from parts (for attack tests). */
export const forge = (header: object, payload: object, signature = '') =>
  `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${signature}`;
