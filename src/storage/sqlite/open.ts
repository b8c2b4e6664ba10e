import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { ConfigError } from '../../config.js';
import { accessHint, createPrivateFile, errorCode, fullDiskHint, isAccessDenied } from '../../files.js';
import * as schema from './schema.js';

export type SqliteDb = BetterSQLite3Database<typeof schema> & { $client: Database.Database };

// src/storage/sqlite and dist/storage/sqlite are both three levels below the package root.
const migrationsFolder = fileURLToPath(new URL('../../../migrations', import.meta.url));

/** How long a statement waits for another process's write lock before SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;

/**
 * Opens (creating folder and file if needed, unless `mustExist`) the SQLite database and applies
 * pending migrations. WAL lets readers run beside the one writer; synchronous=NORMAL in WAL mode
 * survives a process crash with nothing lost (a power cut may lose the last commits, never corrupt
 * the file; the repository syncs admin writes and revocations itself).
 */
export function openSqlite(file: string, { mustExist = false }: { mustExist?: boolean } = {}): SqliteDb {
  try {
    return openAndMigrate(file, mustExist);
  } catch (error) {
    // Not a bug report but the operator's to fix (a wrong DATABASE_URL, a folder, someone else's file, a full disk):
    // a sentence that names the file, which the server and the CLI print without a stack.
    const why = error instanceof Error ? error.message : String(error);
    const hint = isAccessDenied(error) ? accessHint(file) : fullDiskHint(file, error);
    throw new ConfigError(`cannot open the database ${file}: ${why}${hint ? `; ${hint}` : ''}`);
  }
}

function openAndMigrate(file: string, mustExist: boolean): SqliteDb {
  // Sessions hold personal data (sub, personal, addresses) and the keyring its sealed keys: a file
  // this process creates is its user's alone, and SQLite gives the -wal and -shm files the same mode.
  if (fs.statSync(file, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`it is a folder: name the database file in it, such as ${path.join(file, 'tokenmint.db')}`);
  if (mustExist && !fs.existsSync(file)) throw new Error('no such file; a worker opens the file its cluster\'s primary made, and makes no other');
  if (!mustExist) createPrivateFile(file);
  const client = new Database(file, { fileMustExist: mustExist });
  // First, so that even switching to WAL waits for a process that holds the lock.
  client.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  retryAtStartUp(() => client.pragma('journal_mode = WAL'));
  client.pragma('synchronous = NORMAL');
  client.pragma('foreign_keys = ON');
  refuseNewerSchema(client);
  const db = drizzle({ client, schema });
  retryAtStartUp(() => migrate(db, { migrationsFolder }));
  return db;
}

/** Where drizzle records the migrations applied, each with its folder time (`when` in meta/_journal.json). */
const MIGRATIONS_TABLE = '__drizzle_migrations';

/**
 * Refuses a file that a newer tokenmint has migrated (a deploy rolled back, an old CLI on a host):
 * drizzle would apply nothing and carry on, and this version's statements would meet a schema they
 * were not written for — failing renews at best, misreading which token was used at worst (as
 * migrations 0005–0007 moved that). A process that opened the file before the upgrade goes on.
 */
function refuseNewerSchema(client: Database.Database): void {
  const known = client.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(MIGRATIONS_TABLE);
  if (!known) return; // a new file
  const applied = Number(client.prepare(`SELECT max(created_at) FROM ${MIGRATIONS_TABLE}`).pluck().get() ?? 0);
  const ours = Math.max(...readMigrationFiles({ migrationsFolder }).map((m) => m.folderMillis));
  if (applied <= ours) return;
  throw new Error(
    `a newer tokenmint has migrated it (its last migration dates from ${new Date(applied).toISOString()}, this version's from ${new Date(ours).toISOString()}), ` +
      'and this version cannot tell what it changed: run that version or a newer one, or go back to a backup taken before the upgrade',
  );
}

// Processes opening a fresh file at once may all try to switch it to WAL, and to apply the first
// migration. A loser fails at once with SQLITE_BUSY (SQLite does not wait, busy_timeout or not, when a
// reader must upgrade to a writer behind another writer), or on "table exists"; on a later try it
// finds the file in WAL mode and the migrations recorded.
function retryAtStartUp(step: () => void, attempts = 20): void {
  for (let attempt = 1; ; attempt++) {
    try {
      step();
      return;
    } catch (error) {
      if (attempt >= attempts || isNotADatabase(error)) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10 * attempt); // at start-up only
    }
  }
}

/** A file that is not a database, or a damaged one, stays so: no use trying again. */
const isNotADatabase = (error: unknown) => /^SQLITE_(NOTADB|CORRUPT)/.test(errorCode(error));
