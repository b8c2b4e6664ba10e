import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempDir, testEnv } from './helpers.js';
import { startServer } from './processes.js';

const run = promisify(execFile);

/** The first sh block after `heading` in the README, as a reader would copy it. */
function readmeBlock(heading: string): string {
  const readme = fs.readFileSync('README.md', 'utf8');
  const block = new RegExp(`\\n${heading}\\n[^]*?\\n\`\`\`sh\\n([^]*?)\`\`\`\\n`).exec(readme)?.[1];
  if (block === undefined) throw new Error(`no sh block under "${heading}" in README.md`);
  return block;
}

describe('README', () => {
  it('the walkthrough with curl runs as written against a real server, and answers as its comments say', async () => {
    const dir = tempDir();
    const env = testEnv(dir);
    const server = await startServer(env, dir);
    const script = readmeBlock('## Walkthrough with curl');
    expect(script).toContain('http://127.0.0.1:8080/app/acme/issue');
    // In the repository's folder (npx finds the bin, node finds jose), on this test's server and database.
    const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', script.replaceAll('http://127.0.0.1:8080', server.url)], {
      cwd: process.cwd(),
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    });
    const lines = stdout.trim().split('\n');
    expect(Object.keys(JSON.parse(lines[0]!) as object)).toEqual(['auth_token', 'refresh_token', 'key_id', 'public_key']);
    const verified = lines.slice(1, -3).join('\n');
    for (const claim of ["iss: 'acme'", "aud: 'web-app'", "sub: 'user-42'", "ip: '203.0.113.7'", "useragent: 'Mozilla/5.0'", "personal: { name: 'Ada' }"]) expect(verified).toContain(claim);
    expect(lines.slice(-3, -1)).toEqual(['{"message":"invalid refresh token"}', '{"message":"invalid refresh token"}']);
    const jwks = JSON.parse(lines.at(-1)!) as { keys: Array<{ kty: string; crv: string; alg: string; use: string }> };
    expect(jwks.keys).toHaveLength(2);
    for (const key of jwks.keys) expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(server.stdout()).toMatch(/"reason":"reuse after grace: session revoked"/);
    expect(await server.stop()).toBe(0);
  });
});
