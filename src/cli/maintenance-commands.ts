import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { ConfigError } from '../config.js';
import { invalidRequest } from '../errors.js';
import { errorCode } from '../files.js';
import { runMaintenance } from '../maintenance.js';
import { killedBackupFiles } from '../storage/sqlite/backup-files.js';
import { wholeNumber } from '../whole-number.js';
import { printable } from './printable.js';
import { refuseEmpty } from './empty-options.js';
import type { WithContext } from './run.js';

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `--since` or `--before`: an ISO 8601 time, or a duration back from now such as 90m, 24h, 7d. */
function parseTime(option: string, value: string, now: number): number {
  const relative = /^(\d+)([smhd])$/.exec(value);
  if (relative) {
    const time = now - Number(relative[1]) * UNIT_MS[relative[2] as keyof typeof UNIT_MS];
    // Nothing here is older; and far enough back, no date can print it (`audit prune` records it).
    if (time < 0) throw invalidRequest([{ path: option, message: `${value} back from now is before 1970` }]);
    return time;
  }
  const absolute = Date.parse(value);
  if (Number.isNaN(absolute)) throw invalidRequest([{ path: option, message: 'give an ISO 8601 time (2026-01-31T12:00:00Z) or a duration back from now (90m, 24h, 7d)' }]);
  return absolute;
}

export function pruneCommand(withContext: WithContext): Command {
  return new Command('prune')
    .description('delete expired refresh tokens and finished sessions, and destroy expired private keys (the server does this on its own)')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }) => {
        const r = await runMaintenance(tm, { rotate: false });
        output(
          { pruned_refresh_tokens: r.prunedRefreshTokens, pruned_sessions: r.prunedSessions, pruned_keys: r.prunedKeys },
          `pruned ${r.prunedRefreshTokens} refresh tokens, ${r.prunedSessions} sessions, ${r.prunedKeys} keys`,
        );
      }),
    );
}

export function backupCommand(withContext: WithContext): Command {
  return new Command('backup')
    .description('write a consistent copy of the database to a new file (readable by you only), while the server runs or not')
    .argument('<file>', 'the new file (a path relative to the working directory, like DATABASE_URL)')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, cwd, output, warn }, file: string) => {
        const target = path.resolve(cwd, file);
        // `backup backups/` means a file in that folder, which path.resolve would make a file named `backups`.
        if (file.endsWith('/') || isFolder(target)) {
          throw invalidRequest([{ path: 'file', message: `${target} is a folder: name the new file in it, such as ${path.join(target, `tokenmint-${new Date(tm.clock()).toISOString().slice(0, 10)}.db`)}` }]);
        }
        const bytes = await tm.repo.backup(target).catch((error: unknown) => {
          throw cannotWrite(target, error);
        });
        // A cron job whose backups keep being killed would otherwise fill the disk unnoticed.
        const left = killedBackupFiles(path.dirname(target));
        if (left.length > 0) {
          const mb = left.reduce((sum, f) => sum + f.bytes, 0) / 1e6;
          warn(`${path.dirname(target)} holds ${left.length} file${left.length === 1 ? '' : 's'} (${mb.toFixed(1)} MB) left by killed backups, not backups: ${left.map((f) => f.name).join(', ')}; delete them once no backup is running`);
        }
        output({ file: target, bytes }, `backed up to ${target} (${bytes} bytes); back up the master key separately`);
      }),
    );
}

/** Whether `file` is a folder; a path that cannot be looked at (through a file) is left to the backup to report. */
function isFolder(file: string): boolean {
  try {
    return fs.statSync(file, { throwIfNoEntry: false })?.isDirectory() ?? false;
  } catch {
    return false;
  }
}

/**
 * A backup the file system or SQLite could not write (a folder that is not one, or not writable; a
 * full disk) is the operator's to fix: a sentence and exit 1, not an "unexpected error" with exit 70.
 */
function cannotWrite(target: string, error: unknown): unknown {
  if (!/^(E[A-Z]+$|SQLITE_(CANTOPEN|FULL|IOERR|READONLY|PERM))/.test(errorCode(error))) return error;
  return new ConfigError(`cannot write the backup ${target}: ${(error as Error).message}; nothing was left under that name`);
}

export function auditCommands(withContext: WithContext): Command {
  const audit = new Command('audit').description('the audit log: admin actions and security events');
  audit
    .command('list')
    .description('newest first')
    .option('--app <app_id>', 'only this app')
    .option('--since <time>', 'ISO 8601 time or a duration back from now (24h, 7d)')
    .option('--limit <n>', 'at most this many events', '100')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }, opts: { app?: string; since?: string; limit: string }) => {
        refuseEmpty({ '--app': opts.app });
        const limit = wholeNumber(opts.limit);
        if (!Number.isSafeInteger(limit) || limit < 1) throw invalidRequest([{ path: '--limit', message: 'must be a whole number, 1 or more' }]);
        const since = opts.since === undefined ? undefined : parseTime('--since', opts.since, tm.clock());
        const events = (await tm.audit.list({ appId: opts.app, since, limit })).map((e) => ({
          id: e.id,
          at: new Date(e.at).toISOString(),
          actor: e.actor,
          event: e.event,
          app_id: e.appId,
          sub: e.sub,
          session_id: e.sessionId,
          kid: e.kid,
          client_address: e.clientAddress,
          detail: e.detail === null ? null : (JSON.parse(e.detail) as unknown),
        }));
        output(
          events,
          events
            .map((e) => [e.at, e.actor.padEnd(6), e.event.padEnd(32), e.app_id ?? '-', e.sub ? `sub=${printable(e.sub)}` : '', e.kid ? `kid=${e.kid}` : '', e.client_address ? `from=${printable(e.client_address)}` : ''].filter(Boolean).join(' '))
            .join('\n') || 'no events',
        );
      }),
    );
  audit
    .command('prune')
    .description('delete the events from before a time, for a retention policy (nothing else deletes them); records that it did')
    .requiredOption('--before <time>', 'ISO 8601 time or a duration back from now (365d)')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }, opts: { before: string }) => {
        const now = tm.clock();
        const before = parseTime('--before', opts.before, now);
        if (before > now) throw invalidRequest([{ path: '--before', message: 'must not be in the future' }]);
        const pruned = await tm.audit.prune(before);
        output({ pruned }, `deleted ${pruned} audit events from before ${new Date(before).toISOString()}`);
      }),
    );
  return audit;
}
