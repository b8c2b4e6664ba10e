import { invalidRequest } from '../errors.js';

/**
 * Refuses an option given as '' (`--sub "$SUB"` with SUB unset). It names nothing, so a filter by it
 * matched nothing: `session revoke --sub ''` answered "revoked 0" as if the subject had no session
 * left, and `audit list --app ''` "no events".
 */
export function refuseEmpty(options: Record<string, string | undefined>): void {
  for (const [option, value] of Object.entries(options)) {
    if (value === '') throw invalidRequest([{ path: option, message: 'is empty (an unset shell variable?); give what it names' }]);
  }
}
