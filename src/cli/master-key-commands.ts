import { Command } from 'commander';
import { addMasterKey } from '../keyring/master-key.js';
import type { WithContext } from './run.js';

export function masterKeyCommands(withContext: WithContext): Command {
  const masterKey = new Command('master-key').description('the master keys that seal the signing keys\' private halves (README: Operations, Rotating the master key)');

  masterKey
    .command('rotate')
    .description('put a new master key first in keys/master.key; the old ones stay to open what they sealed. Then run `master-key reseal`')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, config, output }) => {
        const [added, ...previous] = addMasterKey({ base64: config.masterKeyBase64, file: config.masterKeyPath });
        await tm.audit.record('master_key.added', { detail: { master_key_id: added.id } });
        output(
          { master_key_id: added.id, previous_master_key_ids: previous.map((m) => m.id) },
          `master key ${added.id} added first to ${config.masterKeyPath}; ${previous.map((m) => m.id).join(', ')} kept to open the keys sealed under ${previous.length === 1 ? 'it' : 'them'}.\n` +
            'A running server reads the file again when it needs to (no restart). Next: `tokenmint master-key reseal`.',
        );
      }),
    );

  masterKey
    .command('reseal')
    .description('seal every stored private key (of keys not revoked) under the first master key, so the others can be dropped. With TOKENMINT_MASTER_KEY, only once every server has been restarted with the new key')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output, warn }) => {
        const { masterKeyId, resealed, notLoaded } = await tm.keyring.reseal();
        for (const k of notLoaded) warn(`key ${k.kid} of app "${k.appId}" is sealed under master key ${k.sealedUnder}, which is not loaded; it was left as it is`);
        output(
          { master_key_id: masterKeyId, resealed, not_loaded: notLoaded.map((k) => ({ app_id: k.appId, kid: k.kid, sealed_under: k.sealedUnder })) },
          `${resealed} private key${resealed === 1 ? '' : 's'} re-sealed under master key ${masterKeyId}` +
            (notLoaded.length ? '' : '; every stored private key of a key not revoked is now sealed under it, so the other master keys can be removed'),
        );
      }),
    );

  return masterKey;
}
