import fs from 'node:fs';
import { Command, CommanderError } from 'commander';
import { systemClock, type Clock } from '../clock.js';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { TokenmintError } from '../errors.js';
import { storageFailureMessage } from '../files.js';
import { openTokenmint, type Tokenmint } from '../tokenmint.js';
import { VERSION } from '../version.js';
import { appCommands } from './app-commands.js';
import { keyCommands } from './key-commands.js';
import { masterKeyCommands } from './master-key-commands.js';
import { auditCommands, backupCommand, pruneCommand } from './maintenance-commands.js';
import { sessionCommands } from './session-commands.js';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  clock?: Clock;
}

/** What every command's action gets: the opened services and a way to answer. */
export interface CliContext {
  tm: Tokenmint;
  config: Config;
  /** The working directory, against which relative paths resolve. */
  cwd: string;
  /** Prints `json` with --json, else the human text; exactly one document on stdout. */
  output: (json: unknown, human: string) => void;
  warn: (text: string) => void;
}

/**
 * Runs one CLI invocation and resolves to its exit code. The database opens only when a command
 * runs (not for --help), and is closed before returning.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let opened: Tokenmint | undefined;
  let exitCode = 0;

  // Wraps an action: opens the services, passes the context, turns errors into a sentence on stderr.
  const withContext: WithContext =
    (action, { createsDatabase = false } = {}) =>
    async (...args) => {
      const command = args[args.length - 1] as Command;
      const json = Boolean(command.opts().json);
      const config = loadConfig(io.env, io.cwd);
      if (!json) io.stderr(`database: ${config.databasePath}\n`);
      if (!createsDatabase && !fs.existsSync(config.databasePath)) throw new ConfigError(noDatabase(config, io));
      // The master key file only when a command seals a new key: an admin's shell may lack the
      // server's TOKENMINT_MASTER_KEY, and `app list` there must not leave a stray key file.
      opened = openTokenmint(config, { clock: io.clock ?? systemClock, actor: 'cli', createMasterKeyFile: 'when-sealing' });
      await action(
        {
          tm: opened,
          config,
          cwd: io.cwd,
          output: (value, human) => io.stdout(json ? JSON.stringify(value, null, 2) + '\n' : human + '\n'),
          warn: (text) => io.stderr(`warning: ${text}\n`),
        },
        ...args,
      ).catch((error: unknown) => {
        throw storageFailure(config.databasePath, error);
      });
    };

  const program = new Command('tokenmint')
    .version(VERSION)
    .description('tokenmint admin: apps, signing keys, master keys, sessions, pruning, backups and the audit log (works whether the server runs or not)');
  program.addCommand(appCommands(withContext));
  program.addCommand(keyCommands(withContext));
  program.addCommand(masterKeyCommands(withContext));
  program.addCommand(sessionCommands(withContext));
  program.addCommand(pruneCommand(withContext));
  program.addCommand(backupCommand(withContext));
  program.addCommand(auditCommands(withContext));
  // addCommand() does not pass these settings down: without them a subcommand would process.exit().
  const configure = (command: Command): void => {
    command.exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr }).showHelpAfterError('(add --help for usage)');
    command.commands.forEach(configure);
  };
  configure(program);

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    exitCode = reportError(error, io);
  } finally {
    await opened?.close();
  }
  return exitCode;
}

function reportError(error: unknown, io: CliIo): number {
  if (error instanceof CommanderError) return error.exitCode; // commander already printed it
  if (error instanceof TokenmintError) {
    const details = (error.options.errors ?? []).map((e) => `\n  ${e.path}: ${e.message}`).join('');
    io.stderr(`tokenmint: ${error.message}${details}\n`);
    return 1;
  }
  if (error instanceof ConfigError) {
    io.stderr(`tokenmint: ${error.message}\n`);
    return 1;
  }
  io.stderr(`tokenmint: unexpected error: ${error instanceof Error ? error.message : String(error)}\n`);
  return 70;
}

export type WithContext = <A extends unknown[]>(
  action: (ctx: CliContext, ...args: A) => Promise<void>,
  options?: { createsDatabase?: boolean },
) => (...args: A) => Promise<void>;

/**
 * A write the database refused for a reason outside tokenmint (a full disk, an I/O error, a lock held
 * past the 5 s wait, a read-only file) is the operator's to fix: a sentence and exit 1, not an
 * "unexpected error" and exit 70. `session revoke --all` on a full disk is where it matters most.
 */
function storageFailure(file: string, error: unknown): unknown {
  const message = storageFailureMessage(file, error);
  return message === undefined ? error : new ConfigError(`${message}. Run the command again once that is fixed`);
}

/**
 * Only `app create` makes a database where there is none: any other command run in the wrong
 * folder (relative paths resolve against it) would leave an empty database and a new master key
 * there, and answer as if the server had no apps.
 */
function noDatabase(config: Config, io: CliIo): string {
  const where = io.env.DATABASE_URL ? 'DATABASE_URL' : `DATABASE_URL is not set: data/tokenmint.db in the current folder, ${io.cwd}`;
  return `no database at ${config.databasePath} (${where}), and this command does not make one. Run it in the folder the server runs in, or with the server's DATABASE_URL; \`tokenmint app create\` makes a new database`;
}
