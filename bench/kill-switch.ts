// npm run bench:kill-switch: what an app's kill switch (`session revoke --all`) costs the other apps
// of the same server. tokenmint runs as `npm start` runs it; an app "big" gets KILL_SWITCH_SESSIONS
// live sessions (default 1,000,000, subjects in no particular order) written straight into the file;
// the bench's own app is renewed in closed-loop chains at concurrency 64, first alone, then while the
// CLI ends every session of "big". Prints both rows and how long the kill switch took.
import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { chainedRenews, type LoadResult } from './load.js';
import { root, startTokenmint, tokenmintEnv } from './targets.js';

const SESSIONS = Number(process.env.KILL_SWITCH_SESSIONS ?? 1_000_000);
const SECONDS = Number(process.env.KILL_SWITCH_SECONDS ?? 15);
const CLIENTS = 64;

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const s = await startTokenmint({ LOG_LEVEL: 'warn' });
const env = { PATH: process.env.PATH, ...tokenmintEnv(s.dir) };
const cli = async (...args: string[]) =>
  JSON.parse((await promisify(execFile)(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args, '--json'], { env, cwd: s.dir })).stdout) as Record<string, unknown>;

try {
  await cli('app', 'create', 'big');
  const db = new Database(env.DATABASE_URL);
  const now = Date.now();
  const add = db.prepare("INSERT INTO sessions (session_id, app_id, sub, created_at, expires_at) VALUES (?, 'big', ?, ?, ?)");
  db.transaction(() => {
    for (let i = 0; i < SESSIONS; i++) add.run(`01KILLSWITCH${String(i).padStart(14, '0')}`, `user-${randomInt(2 ** 40)}`, now - 60_000, now + 86_400_000);
  })();
  db.close();
  console.log(`# kill switch: ${fmt(SESSIONS)} live sessions of app "big"; app "bench" renewed at concurrency ${CLIENTS}, ${SECONDS} s a row\n`);
  console.log('| app "bench" renewing | renews/s | p50 ms | p99 ms | max ms | non-200 |');
  console.log('| --- | --: | --: | --: | --: | --: |');
  const row = (name: string, r: LoadResult) => console.log(`| ${name} | ${fmt(r.perSecond)} | ${fmt(r.p50Ms, 1)} | ${fmt(r.p99Ms, 1)} | ${fmt(r.maxMs, 1)} | ${r.non200} |`);
  row('alone', await chainedRenews(s.target, await s.open(CLIENTS), { seconds: SECONDS, warmupSeconds: 2 }));
  let killSwitch: Promise<{ revoked: unknown; seconds: number }> | undefined;
  const during = await chainedRenews(s.target, await s.open(CLIENTS), {
    seconds: SECONDS,
    warmupSeconds: 2,
    onMeasureStart: () => {
      const started = performance.now();
      killSwitch = cli('session', 'revoke', 'big', '--all').then(({ revoked }) => ({ revoked, seconds: (performance.now() - started) / 1000 }));
    },
  });
  row('while the kill switch runs', during);
  const { revoked, seconds } = await killSwitch!;
  console.log(`\n\`session revoke big --all\`: ${fmt(Number(revoked))} sessions ended in ${fmt(seconds, 1)} s (with the CLI's start)${seconds > SECONDS ? `, longer than the row: raise KILL_SWITCH_SECONDS` : ''}`);
} finally {
  await s.server.stop();
  fs.rmSync(s.dir, { recursive: true, force: true });
}
