import { Command } from 'commander';
import { invalidRequest } from '../errors.js';
import type { WithContext } from './run.js';

export function sessionCommands(withContext: WithContext): Command {
  const session = new Command('session').description('end users\' sessions');

  session
    .command('revoke <app_id>')
    .description('end every session of a subject (--sub) or of the whole app (--all)')
    .option('--sub <sub>', 'the subject whose sessions end')
    .option('--all', 'kill switch: end every session of the app')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }, appId: string, opts: { sub?: string; all?: boolean }) => {
        if ((opts.sub === undefined) === !opts.all) throw invalidRequest([{ path: '--sub/--all', message: 'give exactly one of --sub <sub> or --all' }]);
        await tm.apps.get(appId);
        const revoked = await tm.sessions.revokeSessions(appId, opts.all ? {} : { sub: opts.sub! });
        output({ revoked }, `revoked ${revoked} session${revoked === 1 ? '' : 's'} of ${appId}`);
      }),
    );

  return session;
}
