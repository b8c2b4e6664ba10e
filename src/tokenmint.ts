import { createAppService } from './apps/app-service.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { createKeyring } from './keyring/keyring.js';
import { loadMasterKey } from './keyring/master-key.js';
import type { Logger } from './log.js';
import { openSqlite } from './storage/sqlite/open.js';
import { createSqliteRepository } from './storage/sqlite/sqlite-repository.js';
import { createSessionService } from './tokens/session-service.js';

export type Tokenmint = ReturnType<typeof openTokenmint>;

/**
 * Opens the database and the master key and builds the services; shared by the server, the CLI and
 * the tests so all three run the same code.
 */
export function openTokenmint(config: Config, { clock = systemClock, logger }: { clock?: Clock; logger?: Logger } = {}) {
  const masterKey = loadMasterKey({ base64: config.masterKeyBase64, file: config.masterKeyPath });
  const repo = createSqliteRepository(openSqlite(config.databasePath));
  const keyring = createKeyring({ repo, masterKey, clock, publicationLeadSeconds: config.jwksMaxAgeSeconds });
  return {
    repo,
    keyring,
    apps: createAppService({ repo, keyring, clock }),
    sessions: createSessionService({ repo, keyring, clock, onSecurityEvent: (event) => logger?.warn(event, event.event) }),
    close: () => repo.close(),
  };
}
