import type { HttpBindings } from '@hono/node-server';
import type { AppRecord } from '../storage/repository.js';

/** What handlers share through the Hono context. */
export interface AppEnv {
  Bindings: Partial<HttpBindings>;
  Variables: {
    /** The authenticated app (set by appAuth). */
    app: AppRecord;
    /** Why a request failed, for the request log only. */
    reason: string | undefined;
    /** The caller's X-Request-Id, or a new UUID (see requestIds in app.ts). */
    requestId: string;
  };
}
