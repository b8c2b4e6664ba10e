import { newUlid } from './ids.js';
import type { Clock } from './clock.js';
import type { AuditEvent, Repository } from './storage/repository.js';

export type AuditLog = ReturnType<typeof createAuditLog>;

/** What an event may name. Never a token, a key or an app key. */
export interface AuditFields {
  appId?: string;
  sub?: string;
  sessionId?: string;
  kid?: string;
  clientAddress?: string;
  detail?: Record<string, unknown>;
  /** The API request it came from (its X-Request-Id), kept in the detail: it finds the request's log line. */
  requestId?: string;
}

export type AuditEventName =
  | 'app.created'
  | 'app.updated'
  | 'app.disabled'
  | 'app.enabled'
  | 'app.secret_rotated'
  | 'app.deleted'
  | 'key.rotated'
  | 'key.revoked'
  | 'key.pruned'
  | 'master_key.added'
  | 'master_key.resealed'
  | 'session.revoked'
  | 'audit.pruned'
  | 'security.refresh_reuse'
  | 'security.revoked_key_presented'
  | 'security.app_key_blocked';

/** Called for every recorded event (metrics, the security log). */
export type AuditListener = (event: AuditEventName, fields: AuditFields) => void;

/** Writes admin actions and security events to the audit table, stamped with time and actor. */
export function createAuditLog({ repo, clock, actor, onEvent }: { repo: Repository; clock: Clock; actor: AuditEvent['actor']; onEvent?: AuditListener }) {
  /**
   * Records `event`. With `onceSince` (ms), only if no event of that name, app and client address was
   * recorded after it, as another process may just have recorded the same (a block that every worker
   * of a cluster starts); resolves to whether it did.
   */
  async function record(event: AuditEventName, fields: AuditFields = {}, { onceSince }: { onceSince?: number } = {}): Promise<boolean> {
    const at = clock();
    const detail = fields.requestId === undefined ? fields.detail : { ...fields.detail, request_id: fields.requestId };
    const row: AuditEvent = {
      id: newUlid(at),
      at,
      actor,
      event,
      appId: fields.appId ?? null,
      sub: fields.sub ?? null,
      sessionId: fields.sessionId ?? null,
      kid: fields.kid ?? null,
      clientAddress: fields.clientAddress ?? null,
      detail: detail === undefined ? null : JSON.stringify(detail),
    };
    if (onceSince === undefined) {
      onEvent?.(event, fields); // said even if the write then fails
      await repo.recordAudit(row);
      return true;
    }
    let recorded: boolean;
    try {
      recorded = await repo.recordAuditOnce(row, onceSince);
    } catch (error) {
      onEvent?.(event, fields); // not known to be recorded anywhere: said here, rather than nowhere
      throw error;
    }
    if (recorded) onEvent?.(event, fields);
    return recorded;
  }

  return {
    record,

    list: (filter: { appId?: string; since?: number; limit: number }) => repo.listAudit(filter),

    /** Deletes the events from before `before` (ms), then records that it did. Resolves to how many went. */
    async prune(before: number): Promise<number> {
      const pruned = await repo.pruneAudit(before);
      await record('audit.pruned', { detail: { before: new Date(before).toISOString(), count: pruned } });
      return pruned;
    },
  };
}
