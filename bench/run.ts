import fs from 'node:fs';
import { chainedRenews, type LoadResult } from './load.js';
import { cpuSeconds, peakRssMb } from './proc.js';
import { startBare, startTokenmint, type Started } from './targets.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '16,64').split(',').map(Number);

interface Row extends LoadResult {
  target: string;
  concurrency: number;
  serverCpuSeconds: number;
  peakRssMb: number;
}

async function measure(start: () => Promise<Started>): Promise<Row[]> {
  const s = await start();
  const rows: Row[] = [];
  try {
    for (const concurrency of CONCURRENCY) {
      const tokens = await s.open(concurrency);
      await chainedRenews(s.target, tokens, Math.min(2, SECONDS / 5)); // warm-up (JIT, caches)
      const fresh = await s.open(concurrency);
      const cpu0 = cpuSeconds(s.server.child.pid!);
      const result = await chainedRenews(s.target, fresh, SECONDS);
      rows.push({ ...result, target: s.target.name, concurrency, serverCpuSeconds: cpuSeconds(s.server.child.pid!) - cpu0, peakRssMb: peakRssMb(s.server.child.pid!) });
    }
  } finally {
    await s.server.stop();
    fs.rmSync(s.dir, { recursive: true, force: true });
  }
  return rows;
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

const rows = [...(await measure(startTokenmint)), ...(await measure(startBare))];
console.log(`\nclosed-loop chained renews, ${SECONDS} s each, load generator on the same machine (${(await import('node:os')).cpus().length} cores)\n`);
console.log('| target | concurrency | renews/s | p50 ms | p95 ms | p99 ms | non-200 | server peak RSS MB | server CPU s | load gen CPU s |');
console.log('| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: |');
for (const r of rows) {
  console.log(`| ${r.target} | ${r.concurrency} | ${fmt(r.perSecond)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p95Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${r.non200} | ${fmt(r.peakRssMb)} | ${fmt(r.serverCpuSeconds, 1)} | ${fmt(r.loadCpuSeconds, 1)} |`);
}
