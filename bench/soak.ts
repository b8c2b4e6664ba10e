// npm run bench:soak: tokenmint under steady chained renews for SOAK_MINUTES (default 8), with
// SOAK_WORKERS processes (default 1), to see whether memory or throughput drift as the process ages
// and its tables grow. Every segment (SOAK_SEGMENT_SECONDS, default 15) opens 64 new sessions and
// renews them back to back; the table prints each segment's renews/s, p99, non-200 answers, the
// resident memory of each serving process and the database's size. No ratio, no target: a leak
// shows as memory that keeps rising after the first minute or two, a slowdown as a falling rate.
import fs from 'node:fs';
import { chainedRenews } from './load.js';
import { rssMbNow } from './proc.js';
import { startTokenmint } from './targets.js';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 8);
const WORKERS = process.env.SOAK_WORKERS ?? '1';
const SEGMENT_SECONDS = Number(process.env.SOAK_SEGMENT_SECONDS ?? 15);
const CLIENTS = 64;

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const databaseMb = (file: string) => [file, `${file}-wal`].reduce((sum, f) => sum + (fs.existsSync(f) ? fs.statSync(f).size : 0), 0) / 2 ** 20;

const s = await startTokenmint({ WORKERS, LOG_LEVEL: 'warn' });
const pid = s.server.child.pid!;
const database = `${s.dir}/tokenmint.db`;
const segments = Math.max(1, Math.round((MINUTES * 60) / SEGMENT_SECONDS));
console.log(`# tokenmint soak: ${segments} segments of ${SEGMENT_SECONDS} s, ${CLIENTS} clients, WORKERS=${WORKERS}\n`);
console.log(`start: resident memory ${rssMbNow(pid).map((mb) => fmt(mb)).join(' / ')} MB\n`);
console.log('| segment | minutes | renews | renews/s | p99 ms | non-200 | resident MB per serving process | database + WAL MB |');
console.log('| --: | --: | --: | --: | --: | --: | --: | --: |');
const rss: number[][] = [];
let renews = 0;
const started = Date.now();
try {
  for (let i = 1; i <= segments; i++) {
    const result = await chainedRenews(s.target, await s.open(CLIENTS), { seconds: SEGMENT_SECONDS, warmupSeconds: 0 });
    renews += result.renews;
    rss.push(rssMbNow(pid));
    const minutes = (Date.now() - started) / 60_000;
    console.log(`| ${i} | ${fmt(minutes, 1)} | ${fmt(renews)} | ${fmt(result.perSecond)} | ${fmt(result.p99Ms, 1)} | ${result.non200} | ${rss.at(-1)!.map((mb) => fmt(mb)).join(' / ')} | ${fmt(databaseMb(database))} |`);
  }
} finally {
  await s.server.stop();
  fs.rmSync(s.dir, { recursive: true, force: true });
}
// After the first quarter (caches filling, the JIT settling): how far memory moved from there on.
const settled = rss.slice(Math.floor(rss.length / 4)).flat();
console.log(`\nresident memory after the first quarter: ${fmt(Math.min(...settled))}–${fmt(Math.max(...settled))} MB per process`);
