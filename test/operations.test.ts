import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { runCli } from '../src/cli/run.js';
import { Writable } from 'node:stream';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';
import { runMaintenance, startMaintenance } from '../src/maintenance.js';
import { client, harness, type Harness, type Pair } from './helpers.js';

async function cli(h: Harness, ...args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli([...args, '--json'], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env: h.env, cwd: h.dir, clock: h.clock });
  if (code !== 0) throw new Error(stderr);
  return JSON.parse(stdout) as Array<Record<string, unknown>> & Record<string, unknown>;
}

const rowCount = (h: Harness, table: string) => {
  const db = new Database(h.config.databasePath, { readonly: true });
  try {
    return db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
  } finally {
    db.close();
  }
};

describe('audit log', () => {
  it('records every admin action and security event, with no secret in it', async () => {
    const h = await harness({ env: { APP_KEY_FAILURE_LIMIT: '3' } });
    const { app_key: appKey, key_id: firstKid } = await cli(h, 'app', 'create', 'acme', '--refresh-nbf', '0', '--reuse-grace', '1');
    await cli(h, 'app', 'update', 'acme', '--access-ttl', '600');
    await cli(h, 'app', 'disable', 'acme');
    await cli(h, 'app', 'enable', 'acme');
    const { app_key: newKey } = await cli(h, 'app', 'rotate-secret', 'acme', '--grace', '60');
    const issue = async () => (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, String(newKey))).json()) as Pair;
    const renew = (token: string, requestId?: string) => h.post('/app/acme/renew', { refresh_token: token, ...client }, String(newKey), requestId ? { 'x-request-id': requestId } : {});

    // Reuse after the grace window.
    const reused = await issue();
    await renew(reused.refresh_token);
    h.clock.advance(2);
    expect((await renew(reused.refresh_token, 'req-reuse')).status).toBe(401);
    // A token of a revoked key.
    const signed = await issue();
    await cli(h, 'key', 'rotate', 'acme');
    await cli(h, 'key', 'revoke', 'acme', String(firstKid));
    expect((await renew(signed.refresh_token, 'req-revoked-kid')).status).toBe(401);
    await cli(h, 'session', 'revoke', 'acme', '--sub', 'u');
    // Wrong app keys past the threshold.
    for (let i = 0; i < 4; i++) await h.post('/app/acme/issue', { sub: 'u', ...client }, 'tmk_guess', { 'x-forwarded-for': '1.2.3.4', 'x-request-id': `req-guess-${i}` });

    const events = await cli(h, 'audit', 'list', '--app', 'acme');
    const names = events.map((e) => `${e.actor}:${e.event}`).reverse();
    expect(names).toEqual([
      'cli:app.created',
      'cli:app.updated',
      'cli:app.disabled',
      'cli:app.enabled',
      'cli:app.secret_rotated',
      'server:security.refresh_reuse',
      'cli:key.rotated',
      'cli:key.revoked',
      'server:security.revoked_key_presented',
      'cli:session.revoked',
      'server:security.app_key_blocked',
    ]);
    expect(events.find((e) => e.event === 'security.refresh_reuse')).toMatchObject({ sub: 'u', session_id: expect.any(String), detail: { request_id: 'req-reuse' } });
    expect(events.find((e) => e.event === 'security.revoked_key_presented')).toMatchObject({ kid: firstKid, detail: { request_id: 'req-revoked-kid' } });
    expect(events.find((e) => e.event === 'security.app_key_blocked')).toMatchObject({ detail: { request_id: 'req-guess-2' } });
    // Each security warning in the log names its request, as the request's own line does.
    for (const [event, requestId] of [['security.refresh_reuse', 'req-reuse'], ['security.revoked_key_presented', 'req-revoked-kid'], ['security.app_key_blocked', 'req-guess-2']]) {
      expect(h.logs.find((l) => l.event === event)).toMatchObject({ level: 40, request_id: requestId });
      expect(h.logs.find((l) => l.request_id === requestId && l.status !== undefined)).toMatchObject({ status: event === 'security.app_key_blocked' ? 403 : 401 });
    }
    expect(events.find((e) => e.event === 'key.revoked')).toMatchObject({ kid: firstKid });
    expect(events.find((e) => e.event === 'session.revoked')).toMatchObject({ sub: 'u', detail: { all: false, count: 1 } });

    const raw = JSON.stringify(new Database(h.config.databasePath, { readonly: true }).prepare('SELECT * FROM audit_events').all());
    for (const secret of [appKey, newKey, reused.refresh_token, reused.auth_token, signed.refresh_token]) expect(raw).not.toContain(String(secret));
  });

  it('audit list filters by --since (ISO time or duration) and --limit', async () => {
    const h = await harness();
    await cli(h, 'app', 'create', 'a');
    h.clock.advance(3600);
    await cli(h, 'app', 'create', 'b');
    expect((await cli(h, 'audit', 'list', '--since', '30m')).map((e) => e.app_id)).toEqual(['b']);
    expect((await cli(h, 'audit', 'list', '--since', new Date(h.clock() - 7200_000).toISOString())).map((e) => e.app_id)).toEqual(['b', 'a']);
    expect(await cli(h, 'audit', 'list', '--limit', '1')).toHaveLength(1);
  });

  it('audit prune --before deletes older events only, in batches, and records that it did', async () => {
    const h = await harness();
    await cli(h, 'app', 'create', 'a');
    // More events than one batch deletes, a day ago.
    for (let i = 0; i < 1200; i++) await h.tm.audit.record('session.revoked', { appId: 'a', sub: `u${i}`, detail: { all: false, count: 0 } });
    h.clock.advance(86_400);
    await cli(h, 'app', 'create', 'b');
    const refused = async (...args: string[]) => expect(cli(h, 'audit', 'prune', ...args)).rejects.toThrow();
    await refused(); // --before is required
    await refused('--before', 'soon');
    await refused('--before', new Date(h.clock() + 60_000).toISOString()); // not in the future
    expect(rowCount(h, 'audit_events')).toBe(1202);

    expect(await cli(h, 'audit', 'prune', '--before', '12h')).toEqual({ pruned: 1201 });
    const left = await cli(h, 'audit', 'list');
    expect(left.map((e) => [e.event, e.app_id])).toEqual([['audit.pruned', null], ['app.created', 'b']]);
    expect(left[0]).toMatchObject({ actor: 'cli', detail: { before: new Date(h.clock() - 43_200_000).toISOString(), count: 1201 } });
    expect(await cli(h, 'audit', 'prune', '--before', '12h')).toEqual({ pruned: 0 });
  });
});

describe('GET /metrics', () => {
  it('exposes requests by route and status, renew latency, reuse detections, rotations and keys by state', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme', { refreshNbfSeconds: 0, reuseGraceSeconds: 0 });
    const pair = (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey)).json()) as Pair;
    await h.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, appKey);
    h.clock.advance(1);
    await h.post('/app/acme/renew', { refresh_token: pair.refresh_token, ...client }, appKey);
    await h.tm.keyring.rotate('acme');

    const res = await h.app.request('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toContain('tokenmint_http_requests_total{route="/app/:app_id/renew",method="POST",status="200"} 1');
    expect(text).toContain('tokenmint_http_requests_total{route="/app/:app_id/renew",method="POST",status="401"} 1');
    expect(text).toContain('tokenmint_renew_duration_seconds_count 2');
    expect(text).toContain('tokenmint_refresh_reuse_detections_total{app_id="acme"} 1');
    expect(text).toContain('tokenmint_key_rotations_total{app_id="acme",scheduled="false"} 1');
    expect(text).toMatch(/tokenmint_signing_keys\{app_id="acme",state="retired"\} 1/);
    expect(text).toMatch(/tokenmint_signing_keys\{app_id="acme",state="current"\} 1/);
    expect(text).toContain('tokenmint_process_resident_memory_bytes');
  });

  it('counts a failed maintenance run as failed, with no last success, and logs it', async () => {
    const h = await harness();
    const metrics = createMetrics(h.tm.repo);
    let logged = '';
    const sink = new Writable({ write: (chunk, _enc, done) => ((logged += String(chunk)), done()) });
    await h.tm.close(); // every run now fails on the closed database
    const maintenance = startMaintenance(h.tm, createLogger('info', sink), 60, metrics.observeMaintenance);
    await maintenance.stop();
    // Not registry.metrics(): the signing-keys gauge reads the (closed) database at scrape time.
    const names = ['runs_total', 'last_success_timestamp_seconds', 'duration_seconds'].map((n) => `tokenmint_maintenance_${n}`);
    const text = (await Promise.all(names.map((n) => metrics.registry.getSingleMetricAsString(n)))).join('\n');
    expect(text).toContain('tokenmint_maintenance_runs_total{result="failed"} 1');
    expect(text).not.toContain('tokenmint_maintenance_runs_total{result="ok"}');
    expect(text).toContain('tokenmint_maintenance_last_success_timestamp_seconds 0');
    expect(text).toContain('tokenmint_maintenance_duration_seconds_count 1');
    expect(JSON.parse(logged)).toMatchObject({ level: 50, msg: 'maintenance failed', error: { type: 'TypeError', message: 'The database connection is not open' } });
  });

  it('wants the bearer token when METRICS_TOKEN is set', async () => {
    const h = await harness({ env: { METRICS_TOKEN: 'a-long-random-metrics-token' } });
    expect((await h.app.request('/metrics')).status).toBe(401);
    expect((await h.app.request('/metrics', { headers: { authorization: 'Bearer wrong-token-of-some-length' } })).status).toBe(401);
    expect((await h.app.request('/metrics', { headers: { authorization: 'Bearer a-long-random-metrics-token' } })).status).toBe(200);
    // The scheme in any case, as RFC 9110 §11.1 has it (until this version only "Bearer " was read).
    expect((await h.app.request('/metrics', { headers: { authorization: 'bearer  a-long-random-metrics-token' } })).status).toBe(200);
    expect((await h.app.request('/metrics', { headers: { authorization: 'a-long-random-metrics-token' } })).status).toBe(401);
  });
});

describe('storage stays bounded', () => {
  it('row counts stay flat across many expiry periods of steady traffic', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme', { refreshNbfSeconds: 0, refreshTtlSeconds: 600, accessTtlSeconds: 300, sessionTtlSeconds: 3000 });
    const counts: Array<[number, number]> = [];
    let live: string[] = [];
    for (let period = 0; period < 30; period++) {
      // Each period: 10 new logins; every live session renews once; a few users leave, one is revoked.
      for (let i = 0; i < 10; i++) live.push(((await (await h.post('/app/acme/issue', { sub: `u${period}-${i}`, ...client }, appKey)).json()) as Pair).refresh_token);
      const next: string[] = [];
      for (const [i, token] of live.entries()) {
        if (i % 7 === 3) continue; // abandoned: will idle out
        const res = await h.post('/app/acme/renew', { refresh_token: token, ...client }, appKey);
        if (res.status === 200) next.push(((await res.json()) as Pair).refresh_token);
      }
      if (next.length) await h.post('/app/acme/revoke', { refresh_token: next.pop() }, appKey);
      live = next;
      h.clock.advance(300);
      await runMaintenance(h.tm);
      counts.push([rowCount(h, 'sessions'), rowCount(h, 'refresh_tokens')]);
    }
    // After warm-up (one session lifetime), the tables stop growing.
    const warm = counts.slice(12);
    const [maxSessions, maxTokens] = [Math.max(...warm.map((c) => c[0])), Math.max(...warm.map((c) => c[1]))];
    expect(maxSessions).toBeLessThanOrEqual(Math.min(...warm.map((c) => c[0])) * 1.25);
    expect(maxTokens).toBeLessThanOrEqual(Math.min(...warm.map((c) => c[1])) * 1.25);
    expect(counts.at(-1)![1]).toBeLessThan(counts.at(-1)![0] * 3); // about two tokens per live session
  });

  it('stopping the scheduled maintenance (as a shutdown does) cuts its pruning short; the next run takes up the rest', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme', { refreshNbfSeconds: 0, refreshTtlSeconds: 600 });
    for (let i = 0; i < 3; i++) expect((await h.post('/app/acme/issue', { sub: `u${i}`, ...client }, appKey)).status).toBe(200);
    h.clock.advance(601);
    // It starts a run at once, and is stopped before that run reaches the pruning.
    await startMaintenance(h.tm, createLogger('silent'), 60).stop();
    expect([rowCount(h, 'sessions'), rowCount(h, 'refresh_tokens')]).toEqual([3, 3]);
    expect(await runMaintenance(h.tm)).toMatchObject({ prunedRefreshTokens: 3, prunedSessions: 3 });
  });

  it('`tokenmint prune` deletes what expired, and leaves what can still be used', async () => {
    const h = await harness();
    const { appKey } = await h.createApp('acme', { refreshNbfSeconds: 0, refreshTtlSeconds: 600 });
    const old = (await (await h.post('/app/acme/issue', { sub: 'old', ...client }, appKey)).json()) as Pair;
    h.clock.advance(601);
    const fresh = (await (await h.post('/app/acme/issue', { sub: 'new', ...client }, appKey)).json()) as Pair;
    expect(await cli(h, 'prune')).toEqual({ pruned_refresh_tokens: 1, pruned_sessions: 1, pruned_keys: 0 });
    expect((await h.post('/app/acme/renew', { refresh_token: fresh.refresh_token, ...client }, appKey)).status).toBe(200);
    expect((await h.post('/app/acme/renew', { refresh_token: old.refresh_token, ...client }, appKey)).status).toBe(401);
  });
});
