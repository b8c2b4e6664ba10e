import { Command } from 'commander';
import { invalidRequest } from '../errors.js';
import type { SessionListing } from '../storage/repository.js';
import { toIso as iso } from '../clock.js';
import { refuseEmpty } from './empty-options.js';
import { printable } from './printable.js';
import type { WithContext } from './run.js';

/** A session as printed: no `personal` (it is the user's data, not needed to tell sessions apart). */
const sessionView = (s: SessionListing) => ({
  session_id: s.sessionId,
  created_at: iso(s.createdAt),
  expires_at: iso(s.expiresAt),
  revoked_at: iso(s.revokedAt),
  revoke_reason: s.revokeReason,
  ip: s.ip,
  useragent: s.useragent,
});

export function sessionCommands(withContext: WithContext): Command {
  const session = new Command('session').description('end users\' sessions');

  session
    .command('list <app_id>')
    .description('the sessions of a subject, newest first, with the client that logged in')
    .requiredOption('--sub <sub>', 'the subject')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }, appId: string, opts: { sub: string }) => {
        refuseEmpty({ '--sub': opts.sub });
        await tm.apps.get(appId);
        const sessions = (await tm.sessions.listSessions(appId, opts.sub)).map(sessionView);
        output(
          sessions,
          sessions.length === 0
            ? `no sessions of ${printable(opts.sub)} in ${appId}`
            : sessions.map((s) => `${s.session_id}  since ${s.created_at}  ${s.revoked_at ? `revoked ${s.revoked_at} (${s.revoke_reason})` : `until ${s.expires_at}`}  ${printable(s.ip ?? '-')}  ${printable(s.useragent ?? '-')}`).join('\n'),
        );
      }),
    );

  session
    .command('revoke <app_id>')
    .description('end every session of a subject (--sub), one session (--session) or every session of the app (--all)')
    .option('--sub <sub>', 'the subject whose sessions end')
    .option('--session <session_id>', 'the one session that ends (from `session list`)')
    .option('--all', 'kill switch: end every session of the app')
    .option('--json', 'print JSON')
    .action(
      withContext(async ({ tm, output }, appId: string, opts: { sub?: string; session?: string; all?: boolean }) => {
        if ([opts.sub !== undefined, opts.session !== undefined, opts.all === true].filter(Boolean).length !== 1) {
          throw invalidRequest([{ path: '--sub/--session/--all', message: 'give exactly one of --sub <sub>, --session <session_id> or --all' }]);
        }
        refuseEmpty({ '--sub': opts.sub, '--session': opts.session });
        await tm.apps.get(appId);
        const revoked = await tm.sessions.revokeSessions(appId, opts.all ? {} : opts.sub !== undefined ? { sub: opts.sub } : { sessionId: opts.session! });
        output({ revoked }, `revoked ${revoked} session${revoked === 1 ? '' : 's'} of ${appId}`);
      }),
    );

  return session;
}
