// `npm run example`: a local tokenmint, the app registered once, and the example backend in front.
// Everything lives in EXAMPLE_DIR (default examples/.data, git-ignored); delete it to start over.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { serve } from '@hono/node-server';
import { createBackend } from './backend.js';

// dist-examples/ (this file, compiled) sits next to dist/ (tokenmint) and examples/ (the page).
const root = fileURLToPath(new URL('..', import.meta.url));
const dataDir = path.resolve(process.env.EXAMPLE_DIR ?? path.join(root, 'examples/.data'));
const port = Number(process.env.EXAMPLE_PORT ?? 3000);
// Short on purpose, so refreshes are seen: the auth token lasts 30 s (a refresh may come after a sixth of it).
const accessTtl = Number(process.env.EXAMPLE_ACCESS_TTL ?? 30);
const appId = 'example';

fs.mkdirSync(dataDir, { recursive: true });
// tokenmint runs in dataDir: its database and generated master key (keys/master.key) land there.
const tokenmintEnv = { ...process.env, DATABASE_URL: 'tokenmint.db', HOST: '127.0.0.1', PORT: '0', WORKERS: '1' };

/** The app key from the first run, or a new app (the key is shown once, so it is kept here, 0600). */
async function appKey(): Promise<string> {
  const keyFile = path.join(dataDir, 'app-key');
  if (fs.existsSync(keyFile)) return fs.readFileSync(keyFile, 'utf8').trim();
  const args = ['app', 'create', appId, '--access-ttl', String(accessTtl), '--refresh-nbf', String(Math.floor(accessTtl / 6)), '--json'];
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args], { cwd: dataDir, env: tokenmintEnv });
  const key = String((JSON.parse(stdout) as { app_key: string }).app_key);
  fs.writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
  return key;
}

/** Starts tokenmint (its request log goes to tokenmint.log) and resolves to its URL once it listens. */
function startTokenmint(): Promise<string> {
  const log = fs.openSync(path.join(dataDir, 'tokenmint.log'), 'a');
  const child = spawn(process.execPath, [path.join(root, 'dist/server.js')], { cwd: dataDir, env: tokenmintEnv, stdio: ['ignore', log, 'pipe'] });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      child.kill('SIGTERM');
      process.exit(0);
    });
  }
  process.on('exit', () => child.kill('SIGTERM'));
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (chunk) => {
      process.stderr.write(chunk);
      err += chunk;
      const listening = /listening on (http:\/\/\S+)/.exec(err);
      if (listening) resolve(listening[1]!);
    });
    child.on('exit', (code) => reject(new Error(`tokenmint exited with ${code}`)));
  });
}

const key = await appKey();
const tokenmintUrl = await startTokenmint();
const backend = createBackend({ tokenmintUrl, appId, appKey: key, publicDir: path.join(root, 'examples/public'), secureCookies: false });
serve({ fetch: backend.fetch, hostname: '127.0.0.1', port }, (info) => {
  console.log(`example: open http://127.0.0.1:${info.port}/ (tokenmint at ${tokenmintUrl}, data in ${dataDir})`);
});
