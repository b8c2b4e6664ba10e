import { Command, Option } from 'commander';
import { MAX_SETTING_SECONDS, publicApp, appSettingsPatchSchema, settingsWarnings } from '../apps/app-settings.js';
import { wholeNumber } from '../whole-number.js';
import { invalidRequest } from '../errors.js';
import type { AppSettings } from '../storage/repository.js';
import type { WithContext } from './run.js';

// CLI option → setting. Values are seconds except the audience and max-sessions.
const SETTING_OPTIONS = {
  audience: { flag: '--audience <aud>', key: 'audience', help: 'the auth tokens\' aud (default web-app)' },
  accessTtl: { flag: '--access-ttl <seconds>', key: 'accessTtlSeconds', help: 'auth token lifetime (default 3600)' },
  refreshTtl: { flag: '--refresh-ttl <seconds>', key: 'refreshTtlSeconds', help: 'refresh token idle timeout (default 10800)' },
  refreshNbf: { flag: '--refresh-nbf <seconds>', key: 'refreshNbfSeconds', help: 'delay before a refresh token may renew (default 60)' },
  sessionTtl: { flag: '--session-ttl <seconds>', key: 'sessionTtlSeconds', help: 'absolute session lifetime (default 2592000)' },
  reuseGrace: { flag: '--reuse-grace <seconds>', key: 'reuseGraceSeconds', help: 'window in which a repeated renew gets the same child (default 10)' },
  rotateEvery: { flag: '--rotate-every <seconds>', key: 'rotateEverySeconds', help: 'automatic key rotation period, 0 = never (default 2592000)' },
  maxSessions: { flag: '--max-sessions <n>', key: 'maxSessions', help: 'live sessions a subject may hold; a new one ends the oldest beyond it, 0 = no limit (default 0)' },
} as const satisfies Record<string, { flag: string; key: keyof AppSettings; help: string }>;

function withSettingOptions(command: Command): Command {
  for (const option of Object.values(SETTING_OPTIONS)) command.addOption(new Option(option.flag, option.help));
  return command;
}

/** The settings given on the command line, validated; field errors name the CLI option. */
function settingsFrom(opts: Record<string, unknown>): Partial<AppSettings> {
  const given: Record<string, unknown> = {};
  for (const [name, option] of Object.entries(SETTING_OPTIONS)) {
    if (opts[name] !== undefined) given[option.key] = opts[name];
  }
  const parsed = appSettingsPatchSchema.safeParse(given);
  if (parsed.success) return parsed.data;
  const flagOf = (key: PropertyKey) => Object.values(SETTING_OPTIONS).find((o) => o.key === key)?.flag.split(' ')[0] ?? String(key);
  throw invalidRequest(parsed.error.issues.map((i) => ({ path: flagOf(i.path[0]!), message: i.message })));
}

const describeApp = (app: ReturnType<typeof publicApp>) =>
  Object.entries(app)
    .map(([k, v]) => `${k.padEnd(28)} ${String(v)}`)
    .join('\n');

export function appCommands(withContext: WithContext): Command {
  const app = new Command('app').description('register and manage apps');

  withSettingOptions(app.command('create <app_id>').description('register an app and make its first signing key'))
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output, warn }, appId: string, opts: Record<string, unknown>) => {
        const created = await tm.apps.create(appId, settingsFrom(opts));
        for (const warning of settingsWarnings(await tm.apps.get(appId), (await tm.keyring.jwksCaching()).maxAgeSeconds)) warn(warning);
        output(
          { app_id: created.appId, app_key: created.appKey, key_id: created.kid },
          `app ${created.appId} created\napp key (shown this once; store it now): ${created.appKey}\nsigning key: ${created.kid}`,
        );
      }, { createsDatabase: true }),
    );

  app
    .command('list')
    .description('list registered apps (never an app key)')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }) => {
        const apps = (await tm.apps.list()).map(publicApp);
        output(apps, apps.length === 0 ? 'no apps yet; create one with `tokenmint app create <app_id>`' : apps.map((a) => `${a.app_id}${a.disabled ? ' (disabled)' : ''}`).join('\n'));
      }),
    );

  app
    .command('show <app_id>')
    .description('show an app and its settings')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }, appId: string) => {
        const shown = publicApp(await tm.apps.get(appId));
        output(shown, describeApp(shown));
      }),
    );

  withSettingOptions(app.command('update <app_id>').description('change an app\'s settings'))
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output, warn }, appId: string, opts: Record<string, unknown>) => {
        const settings = settingsFrom(opts);
        // Else it would record an app.updated that changed nothing.
        if (Object.keys(settings).length === 0) throw invalidRequest([{ path: 'options', message: 'nothing to change: give the settings to change, such as --access-ttl 900 (see tokenmint app update --help)' }]);
        const record = await tm.apps.update(appId, settings);
        for (const warning of settingsWarnings(record, (await tm.keyring.jwksCaching()).maxAgeSeconds)) warn(warning);
        const updated = publicApp(record);
        output(updated, describeApp(updated));
      }),
    );

  for (const [name, disabled] of [['disable', true], ['enable', false]] as const) {
    app
      .command(`${name} <app_id>`)
      .description(disabled ? 'refuse every app-key request (403); the JWKS stays public' : 'accept app-key requests again')
      .option('--json', 'print JSON')
      .action(
        withContext(async ({ tm, output }, appId: string) => {
          const changed = publicApp(await tm.apps.setDisabled(appId, disabled));
          output(changed, `app ${appId} ${disabled ? 'disabled' : 'enabled'}`);
        }),
      );
  }

  app
    .command('delete <app_id>')
    .description('delete a disabled app with no session left, and its signing keys, for good')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }, appId: string) => {
        await tm.apps.delete(appId);
        output({ app_id: appId, deleted: true }, `app ${appId} deleted, with its signing keys; its JWKS now answers 404`);
      }),
    );

  app
    .command('rotate-secret <app_id>')
    .description('issue a new app key; the old one keeps working for the grace period')
    .option('--grace <seconds>', 'how long the old app key keeps working', '0')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }, appId: string, opts: { grace: string }) => {
        const grace = wholeNumber(opts.grace);
        if (!Number.isSafeInteger(grace) || grace < 0 || grace > MAX_SETTING_SECONDS) {
          throw invalidRequest([{ path: '--grace', message: `must be a whole number of seconds from 0 to ${MAX_SETTING_SECONDS} (10 years)` }]);
        }
        const appKey = await tm.apps.rotateSecret(appId, grace);
        output(
          { app_id: appId, app_key: appKey },
          `new app key for ${appId} (shown this once; store it now): ${appKey}\n${grace > 0 ? `the old key keeps working for ${grace} s` : 'the old key no longer works'}`,
        );
      }),
    );

  return app;
}
