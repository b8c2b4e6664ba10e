import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import cluster from 'node:cluster';
import { clusterMetricsOf } from './cluster.js';
import type { AuditEventName, AuditFields } from './audit.js';
import type { MaintenanceOutcome } from './maintenance.js';
import type { Repository } from './storage/repository.js';
import { VERSION } from './version.js';

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Prometheus metrics of one server process (summed over the workers of a cluster), in a registry of its own (never prom-client's global
 * one, so several apps in one process — tests — do not collide).
 */
export function createMetrics(repo: Repository) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tokenmint_' });

  // The usual *_build_info: 1, labelled with what runs ("max" over workers, not their sum).
  new Gauge({ name: 'tokenmint_build_info', help: 'The tokenmint version this process runs', labelNames: ['version'] as const, aggregator: 'max', registers: [registry] }).set({ version: VERSION }, 1);

  const requests = new Counter({
    name: 'tokenmint_http_requests_total',
    help: 'HTTP requests by route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
  });
  const renewDuration = new Histogram({
    name: 'tokenmint_renew_duration_seconds',
    help: 'Time to answer POST /app/:app_id/renew, whatever the status',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const reuseDetections = new Counter({
    name: 'tokenmint_refresh_reuse_detections_total',
    help: 'Refresh tokens presented again after the reuse grace: sessions revoked',
    labelNames: ['app_id'] as const,
    registers: [registry],
  });
  const rotations = new Counter({
    name: 'tokenmint_key_rotations_total',
    help: 'Key rotations carried out by this process (scheduled or by hand)',
    labelNames: ['app_id', 'scheduled'] as const,
    registers: [registry],
  });
  const securityEvents = new Counter({
    name: 'tokenmint_security_events_total',
    help: 'Security events recorded in the audit log, by event',
    labelNames: ['event'] as const,
    registers: [registry],
  });
  const maintenanceRuns = new Counter({
    name: 'tokenmint_maintenance_runs_total',
    help: 'Scheduled maintenance runs (due key rotations, then pruning) by result',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const maintenanceDuration = new Histogram({
    name: 'tokenmint_maintenance_duration_seconds',
    help: 'Time a scheduled maintenance run took, pruning included',
    buckets: [0.01, 0.1, 1, 10, 60, 300],
    registers: [registry],
  });
  const lastMaintenance = new Gauge({
    name: 'tokenmint_maintenance_last_success_timestamp_seconds',
    help: 'When the last scheduled maintenance run that succeeded ended (0: none yet)',
    registers: [registry],
    aggregator: 'max', // one worker runs maintenance; the others report 0
  });
  const pruned = new Counter({
    name: 'tokenmint_pruned_total',
    help: 'Rows deleted by scheduled maintenance: expired refresh tokens, finished sessions, expired private keys',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'tokenmint_signing_keys',
    help: 'Signing keys in the keyring by app and state (pruned keys not counted)',
    labelNames: ['app_id', 'state'] as const,
    registers: [registry],
    aggregator: 'first', // every worker reads the same rows: summing them would count each key n times
    // Read from the database at scrape time, so it also counts what other processes changed.
    async collect() {
      this.reset();
      for (const app of await repo.listApps()) {
        for (const key of await repo.listKeys(app.appId)) {
          if (key.prunedAt === null) this.inc({ app_id: app.appId, state: key.state });
        }
      }
    },
  });

  return {
    registry,
    /** The exposition text: this process's metrics, or in a cluster worker the sum over all workers. */
    text: cluster.isWorker ? clusterMetricsOf(registry) : () => registry.metrics(),
    observeRequest(route: string, method: string, status: number, seconds: number): void {
      requests.inc({ route, method, status: String(status) });
      if (route === '/app/:app_id/renew') renewDuration.observe(seconds);
    },
    /** A scheduled maintenance run has ended (its rotations are counted as audit events). */
    observeMaintenance(outcome: MaintenanceOutcome, seconds: number): void {
      maintenanceRuns.inc({ result: 'result' in outcome ? 'ok' : 'failed' });
      maintenanceDuration.observe(seconds);
      if (!('result' in outcome)) return;
      lastMaintenance.set(Date.now() / 1000);
      pruned.inc({ kind: 'refresh_token' }, outcome.result.prunedRefreshTokens);
      pruned.inc({ kind: 'session' }, outcome.result.prunedSessions);
      pruned.inc({ kind: 'key' }, outcome.result.prunedKeys);
    },
    /** An audit listener: counts the events that have a metric. */
    onAuditEvent(event: AuditEventName, fields: AuditFields): void {
      if (event === 'security.refresh_reuse') reuseDetections.inc({ app_id: fields.appId ?? '' });
      if (event === 'key.rotated') rotations.inc({ app_id: fields.appId ?? '', scheduled: String(Boolean(fields.detail?.scheduled)) });
      if (event.startsWith('security.')) securityEvents.inc({ event });
    },
  };
}
