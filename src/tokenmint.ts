import { createAppService } from './apps/app-service.js';
import { createAuditLog, type AuditListener } from './audit.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { createKeyring } from './keyring/keyring.js';
import { openMasterKeyRing } from './keyring/master-key.js';
import type { Logger } from './log.js';
import { withCatalogCache } from './storage/catalog-cache.js';
import { openSqlite } from './storage/sqlite/open.js';
import { createSqliteRepository } from './storage/sqlite/sqlite-repository.js';
import { createSessionService } from './tokens/session-service.js';

export type Tokenmint = ReturnType<typeof openTokenmint>;

export interface OpenOptions {
  clock?: Clock;
  /** Security events also go here as warnings. */
  logger?: Logger;
  /** Who the audit log names as the actor. */
  actor?: 'cli' | 'server';
  /** Also told of every audit event (metrics). */
  onAuditEvent?: AuditListener;
  /** When a missing master key file is made (see openMasterKeyRing): the server's default, at once. */
  createMasterKeyFile?: 'at-open' | 'when-sealing';
  /** Refuse to make the database: a cluster's workers open the file their primary made. */
  databaseMustExist?: boolean;
}

/**
 * Opens the database and the master key and builds the services; shared by the server, the CLI and
 * the tests so all three run the same code.
 */
export function openTokenmint(config: Config, { clock = systemClock, logger, actor = 'server', onAuditEvent, createMasterKeyFile = 'at-open', databaseMustExist = false }: OpenOptions = {}) {
  const masterKeys = openMasterKeyRing({ base64: config.masterKeyBase64, file: config.masterKeyPath, createFile: createMasterKeyFile });
  const repo = withCatalogCache(createSqliteRepository(openSqlite(config.databasePath, { mustExist: databaseMustExist })));
  const audit = createAuditLog({
    repo,
    clock,
    actor,
    onEvent: (event, fields) => {
      if (event.startsWith('security.')) {
        const { appId, sessionId, clientAddress, requestId, ...rest } = fields;
        logger?.warn({ event, request_id: requestId, app_id: appId, session_id: sessionId, client_address: clientAddress, ...rest }, event);
      }
      onAuditEvent?.(event, fields);
    },
  });
  const keyring = createKeyring({ repo, masterKeys, clock, publicationLeadSeconds: config.jwksMaxAgeSeconds, followServerPublicationLead: actor === 'cli', audit });
  return {
    repo,
    clock,
    audit,
    keyring,
    apps: createAppService({ repo, keyring, clock, audit }),
    sessions: createSessionService({ repo, keyring, clock, audit }),
    close: () => repo.close(),
  };
}
