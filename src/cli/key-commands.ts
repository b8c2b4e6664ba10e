import { Command } from 'commander';
import { keyVerifiesUntil } from '../keyring/keyring.js';
import { knownToVerifiersAt } from '../keyring/jwks-caching.js';
import { sealedUnder } from '../keyring/master-key.js';
import type { AppRecord, SigningKeyRecord } from '../storage/repository.js';
import { invalidRequest } from '../errors.js';
import { toIso as iso } from '../clock.js';
import type { WithContext } from './run.js';

function publicKey(app: AppRecord, key: SigningKeyRecord) {
  return {
    kid: key.kid,
    state: key.state,
    created_at: iso(key.createdAt),
    activated_at: iso(key.activatedAt),
    retired_at: iso(key.retiredAt),
    revoked_at: iso(key.revokedAt),
    // When it stops verifying and leaves the JWKS (null: not scheduled).
    leaves_jwks_at: iso(keyVerifiesUntil(app, key)),
    pruned_at: iso(key.prunedAt),
    // The master key its private half is sealed under (null once pruned): see `master-key reseal`.
    sealed_under: key.sealedPrivateKey === null ? null : (sealedUnder(key.sealedPrivateKey) ?? null),
  };
}

export function keyCommands(withContext: WithContext): Command {
  const key = new Command('key').description('manage an app\'s ES256 signing keys');

  key
    .command('list <app_id>')
    .description('the keyring: every key with its state and dates')
    .option('--all', 'also the records of pruned keys (private key destroyed)')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }, appId: string, opts: { all?: boolean }) => {
        const app = await tm.apps.get(appId);
        const keys = (await tm.keyring.list(appId, { includePruned: opts.all })).map((k) => publicKey(app, k));
        output(keys, keys.map((k) => `${k.kid}  ${k.state.padEnd(8)} created ${k.created_at}${k.leaves_jwks_at ? `  leaves JWKS ${k.leaves_jwks_at}` : ''}`).join('\n'));
      }),
    );

  key
    .command('rotate [app_id]')
    .description('promote the next key to current and retire the current one (takes effect at once)')
    .option('--due', 'instead: carry out every scheduled rotation that is due (all apps) and prune expired keys, as the server does')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output, warn }, appId: string | undefined, opts: { due?: boolean }) => {
        if (opts.due) {
          if (appId !== undefined) throw invalidRequest([{ path: '--due', message: '--due rotates every app that is due; give no app_id' }]);
          const rotated = await tm.keyring.rotateDue();
          const pruned = await tm.keyring.pruneExpiredKeys();
          output(
            { rotated: rotated.map((r) => ({ app_id: r.appId, kid: r.kid })), pruned },
            `${rotated.map((r) => `rotated ${r.appId}: current key is now ${r.kid}\n`).join('')}${rotated.length} rotation${rotated.length === 1 ? '' : 's'} due; ${pruned} expired key${pruned === 1 ? '' : 's'} pruned`,
          );
          return;
        }
        if (appId === undefined) throw invalidRequest([{ path: 'app_id', message: 'give an app_id, or --due' }]);
        await tm.apps.get(appId);
        const current = await tm.keyring.rotate(appId);
        const activatedAt = current.activatedAt ?? 0;
        const publishedFor = `key ${current.kid} was published ${Math.round((activatedAt - current.createdAt) / 1000)} s ago`;
        const stale = 'a verifier holding an older cached JWKS may not know it until it refetches';
        const caching = await tm.keyring.jwksCaching(); // the server's
        if (activatedAt < current.createdAt + caching.maxAgeSeconds * 1000) {
          warn(`${publishedFor}, less than the JWKS cache lifetime (${caching.maxAgeSeconds} s): ${stale}`);
        } else if (caching.former && activatedAt < knownToVerifiersAt(caching, current.createdAt)) {
          const lowered = `${caching.former.maxAgeSeconds} s until ${iso(caching.former.loweredAt)}`;
          warn(`${publishedFor}, but the server's JWKS cache lifetime was ${lowered}, and a JWKS fetched before then may be cached that long: ${stale}`);
        }
        output({ kid: current.kid }, `current key of ${appId} is now ${current.kid}`);
      }),
    );

  key
    .command('revoke <app_id> <kid>')
    .description('emergency: refuse every token that key signed and drop it from the JWKS')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }, appId: string, kid: string) => {
        await tm.apps.get(appId);
        const revoked = await tm.keyring.revoke(appId, kid);
        output({ kid: revoked.kid, state: 'revoked' }, `key ${revoked.kid} of ${appId} revoked`);
      }),
    );

  return key;
}
