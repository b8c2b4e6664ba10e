import { Pool } from 'undici';

/** How one server renews: the request for a token, and the next token from a 200 answer. */
export interface RenewTarget {
  name: string;
  origin: string;
  request(token: string): { path: string; headers: Record<string, string>; body: string };
  nextToken(answer: unknown): string;
}

export interface LoadResult {
  renews: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  non200: number;
  /** CPU seconds this (load generator) process used during the run. */
  loadCpuSeconds: number;
  /** [token presented, answer] pairs kept for checking afterwards. */
  sample: Array<[string, unknown]>;
}

const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

/**
 * Closed-loop chained renews: `tokens.length` virtual clients, each renewing with the token of its own
 * previous answer, back to back, for `seconds`. One keep-alive connection per client.
 */
export async function chainedRenews(target: RenewTarget, tokens: string[], seconds: number, sampleEvery = 250): Promise<LoadResult> {
  const pool = new Pool(target.origin, { connections: tokens.length, pipelining: 1 });
  const latencies: number[] = [];
  const sample: Array<[string, unknown]> = [];
  let non200 = 0;
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  const deadline = started + seconds * 1000;

  const client = async (token: string) => {
    while (performance.now() < deadline) {
      const { path, headers, body } = target.request(token);
      const t0 = performance.now();
      const res = await pool.request({ method: 'POST', path, headers, body });
      const answer = await res.body.json();
      latencies.push(performance.now() - t0);
      if (res.statusCode !== 200) {
        non200 += 1;
        return; // the chain is broken; a correct server never gets here
      }
      if (latencies.length % sampleEvery === 0) sample.push([token, answer]);
      token = target.nextToken(answer);
    }
  };
  await Promise.all(tokens.map(client));
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  await pool.close();

  const sorted = Float64Array.from(latencies).sort();
  return {
    renews: latencies.length - non200,
    seconds: elapsed,
    perSecond: (latencies.length - non200) / elapsed,
    p50Ms: percentile(sorted, 50),
    p95Ms: percentile(sorted, 95),
    p99Ms: percentile(sorted, 99),
    non200,
    loadCpuSeconds: (cpu.user + cpu.system) / 1e6,
    sample,
  };
}
