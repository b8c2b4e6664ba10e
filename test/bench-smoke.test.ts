import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

// Only that the benchmark still runs and checks what it measures; its figures are never asserted
// (shared machines are noisy). `npm run bench` is the real run.
it('npm run bench works end to end (tiny run: every server answers, sampled answers verify)', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [path.resolve('dist-bench/run.js')], {
    env: { PATH: process.env.PATH, BENCH_SECONDS: '0.5', BENCH_CONCURRENCY: '4', BENCH_GROWTH_SESSIONS: '2000' },
    timeout: 120_000,
  });
  const rows = stdout.split('\n').filter((l) => /^\| (tokenmint|oidc-provider|bare renew|ceiling)/.test(l));
  expect(rows.map((r) => r.split('|')[1]!.trim())).toEqual(['tokenmint', 'tokenmint, WORKERS=1', 'oidc-provider', 'bare renew', 'ceiling']);
  for (const row of rows) {
    const cells = row.split('|').map((c) => c.trim());
    expect(Number(cells[3]!.replace(/,/g, '')), row).toBeGreaterThan(0); // renews/s
    expect(cells[7], row).toBe('0'); // non-200
    expect(Number(cells[8]), row).toBeGreaterThan(0); // answers checked
  }
  expect(stdout).toContain('tokenmint ÷ oidc-provider');
  expect(stdout).toContain('tokenmint ÷ ceiling');
  // Growth rows: renews going round a population of stored sessions, checked the same way.
  const growth = (stdout.split('## Growth')[1] ?? '').split('\n').filter((l) => /^\| [\d,]+ \|/.test(l));
  expect(growth.map((r) => r.split('|')[1]!.trim())).toEqual(['1,000', '2,000']);
  for (const row of growth) {
    const cells = row.split('|').map((c) => c.trim());
    expect(Number(cells[5]!.replace(/,/g, '')), row).toBeGreaterThan(0); // renews/s
    expect(cells[7], row).toBe('0'); // non-200
    expect(Number(cells[8]), row).toBeGreaterThan(0); // answers checked
  }
  expect(stdout).toMatch(/bytes per live session: [\d,]+/);
}, 150_000);
