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
  maxMs: number;
  non200: number;
  /** CPU seconds this (load generator) process used during the run. */
  loadCpuSeconds: number;
  /** [token presented, answer] pairs kept for checking afterwards. */
  sample: Array<[string, unknown]>;
}

const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

export interface LoadOptions {
  /** Measured seconds. */
  seconds: number;
  /** Seconds the same clients renew first, on the same connections, unmeasured. */
  warmupSeconds: number;
  /** Called once when measuring starts (e.g. to read the server's CPU time). */
  onMeasureStart?: () => void;
  /** The first measured answer and every `sampleEvery`-th after it are kept for checking (so even a tiny run on a slow machine checks some). */
  sampleEvery?: number;
  /**
   * Virtual clients, if fewer than the tokens: then they share the tokens round one ring — each renews
   * the token at its head and puts its answer's at its tail — so the renews go round the whole
   * population of sessions instead of staying on one session per client.
   */
  clients?: number;
}

/**
 * Closed-loop chained renews: `tokens.length` virtual clients (or `clients`, see LoadOptions), each
 * renewing with the token of its own previous answer, back to back, on one keep-alive connection each.
 * The warm-up's renews (connecting, first renews of fresh sessions, JIT) are not measured; a renew
 * counts if it starts after it.
 */
export async function chainedRenews(target: RenewTarget, tokens: string[], { seconds, warmupSeconds, onMeasureStart, sampleEvery = 250, clients = tokens.length }: LoadOptions): Promise<LoadResult> {
  const pool = new Pool(target.origin, { connections: clients, pipelining: 1 });
  // The tokens go round a ring: a client takes the one at `head` and puts its answer's at `tail`. With
  // one token per client, a client takes back the token it has just put: its own chain.
  const ring = [...tokens];
  let head = 0;
  let tail = 0;
  const take = () => {
    const token = ring[head]!;
    head = (head + 1) % ring.length;
    return token;
  };
  const put = (token: string) => {
    ring[tail] = token;
    tail = (tail + 1) % ring.length;
  };
  const latencies: number[] = [];
  const sample: Array<[string, unknown]> = [];
  let non200 = 0;
  let measuring = false;
  let cpuStart = process.cpuUsage();
  let started = performance.now();
  const deadline = started + (warmupSeconds + seconds) * 1000;
  const warmup = setTimeout(() => {
    onMeasureStart?.();
    cpuStart = process.cpuUsage();
    started = performance.now();
    measuring = true;
  }, warmupSeconds * 1000);

  const client = async () => {
    let token = take();
    while (performance.now() < deadline) {
      const { path, headers, body } = target.request(token);
      const counts = measuring;
      const t0 = performance.now();
      const res = await pool.request({ method: 'POST', path, headers, body });
      const answer = await res.body.json();
      if (res.statusCode !== 200) {
        non200 += 1;
        return; // the chain is broken; a correct server never gets here
      }
      if (counts) {
        latencies.push(performance.now() - t0);
        if ((latencies.length - 1) % sampleEvery === 0) sample.push([token, answer]);
      }
      put(target.nextToken(answer));
      token = take();
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  clearTimeout(warmup);
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  await pool.close();

  const sorted = Float64Array.from(latencies).sort();
  return {
    renews: latencies.length,
    seconds: elapsed,
    perSecond: latencies.length / elapsed,
    p50Ms: percentile(sorted, 50),
    p95Ms: percentile(sorted, 95),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.at(-1) ?? NaN,
    non200,
    loadCpuSeconds: (cpu.user + cpu.system) / 1e6,
    sample,
  };
}
