import type { AuditLog } from '../audit.js';
import type { Clock } from '../clock.js';
import { conflict, invalidAppKey, invalidRequest, notFound } from '../errors.js';
import { tokenLifetimeMs, type Keyring } from '../keyring/keyring.js';
import type { AppRecord, AppSettings, Repository } from '../storage/repository.js';
import { hashSecret, secretMatches } from '../secret.js';
import { generateAppKey } from './app-key.js';
import { appIdSchema, checkSettings, DEFAULT_APP_SETTINGS } from './app-settings.js';

export type AppService = ReturnType<typeof createAppService>;

// Compared against when the app is unknown, so that an unknown app costs the same as a wrong key.
const DUMMY_HASH = hashSecret('tokenmint-unknown-app');

const noApp = (appId: string) => notFound(`no app "${appId}"; see \`tokenmint app list\``);

export function createAppService({ repo, keyring, clock, audit }: { repo: Repository; keyring: Keyring; clock: Clock; audit: AuditLog }) {
  async function get(appId: string): Promise<AppRecord> {
    const app = await repo.findApp(appId);
    if (!app) throw noApp(appId);
    return app;
  }

  function assertValid(settings: AppSettings): void {
    const problem = checkSettings(settings);
    if (problem) throw invalidRequest([{ path: '--refresh-nbf', message: problem }]);
  }

  return {
    get,
    list: () => repo.listApps(),

    /** Registers an app and its first keys; the app key is returned this once and stored hashed. */
    async create(appId: string, settings: Partial<AppSettings> = {}) {
      const id = appIdSchema.safeParse(appId);
      if (!id.success) throw invalidRequest([{ path: 'app_id', message: id.error.issues[0]!.message }]);
      const full = { ...DEFAULT_APP_SETTINGS, ...settings };
      assertValid(full);
      const now = clock();
      const appKey = generateAppKey();
      const keys = await keyring.newKeys(appId, now);
      await repo.createApp(
        { appId, ...full, appKeyHash: hashSecret(appKey), previousAppKeyHash: null, previousAppKeyExpiresAt: null, disabled: false, createdAt: now, updatedAt: now },
        keys,
      );
      const kid = keys.find((k) => k.state === 'current')!.kid;
      await audit.record('app.created', { appId, kid, detail: { ...full } });
      return { appId, appKey, kid };
    },

    /** New settings; the keys that signed under the old ones keep verifying what they signed (tokenLifetimeMs). */
    async update(appId: string, settings: Partial<AppSettings>): Promise<AppRecord> {
      // Checked against the app as it is inside the write's transaction: two updates at once, each fine
      // alone (--refresh-nbf 50; --access-ttl 40), could otherwise leave settings that renew nothing.
      const patch = (before: AppRecord) => {
        assertValid({ ...before, ...settings });
        return settings;
      };
      const updated = await repo.updateApp(appId, patch, clock(), tokenLifetimeMs);
      if (!updated) throw noApp(appId);
      await audit.record('app.updated', { appId, detail: { ...settings } });
      return updated;
    },

    async setDisabled(appId: string, disabled: boolean): Promise<AppRecord> {
      const updated = await repo.updateApp(appId, { disabled }, clock());
      if (!updated) throw noApp(appId);
      await audit.record(disabled ? 'app.disabled' : 'app.enabled', { appId });
      return updated;
    },

    /**
     * Deletes an app for good: its settings, app key and signing keys (the private ones destroyed; its
     * JWKS then answers 404). Only a disabled app with no session left, so that nothing it issued can
     * still renew: what to do first is in the refusal. The audit log keeps its history.
     */
    async delete(appId: string): Promise<void> {
      const outcome = await repo.deleteApp(appId);
      if (outcome === 'unknown') throw noApp(appId);
      if (outcome === 'enabled') throw conflict(`app "${appId}" is enabled: disable it first (\`tokenmint app disable ${appId}\`), so that it issues nothing more`);
      if (typeof outcome === 'object') {
        throw conflict(
          `app "${appId}" still has ${outcome.sessions} stored session(s): end them (\`tokenmint session revoke ${appId} --all\`), then delete once pruning has removed them — ` +
            'a session goes when its newest refresh token has expired (within refresh-ttl of its last renew) or at its end; `tokenmint prune` prunes at once',
        );
      }
      await audit.record('app.deleted', { appId });
    },

    /** A new app key; the old one keeps working for `graceSeconds` (0: stops at once). */
    async rotateSecret(appId: string, graceSeconds: number): Promise<string> {
      const now = clock();
      const appKey = generateAppKey();
      // The key it replaces is read in the write's transaction: two rotations at once then chain, where
      // both kept the key before them and the key the first printed never worked.
      const rotated = await repo.updateApp(
        appId,
        (app) => ({
          appKeyHash: hashSecret(appKey),
          previousAppKeyHash: graceSeconds > 0 ? app.appKeyHash : null,
          previousAppKeyExpiresAt: graceSeconds > 0 ? now + graceSeconds * 1000 : null,
        }),
        now,
      );
      if (!rotated) throw noApp(appId);
      await audit.record('app.secret_rotated', { appId, detail: { grace_seconds: graceSeconds } });
      return appKey;
    },

    /**
     * The app, if `presented` is its key (or its previous key within the grace period) and it is
     * enabled. Every failure is the same 403; the reason is for the log only.
     */
    async authenticate(appId: string, presented: string | undefined): Promise<AppRecord> {
      const app = await repo.findApp(appId);
      const key = presented ?? '';
      const current = secretMatches(key, app?.appKeyHash ?? DUMMY_HASH);
      const previous =
        app?.previousAppKeyHash != null &&
        app.previousAppKeyExpiresAt !== null &&
        app.previousAppKeyExpiresAt > clock() &&
        secretMatches(key, app.previousAppKeyHash);
      if (!app) throw invalidAppKey('unknown app');
      if (presented === undefined) throw invalidAppKey('missing app key');
      if (!current && !previous) throw invalidAppKey('wrong app key');
      if (app.disabled) throw invalidAppKey('app disabled');
      return app;
    },
  };
}
