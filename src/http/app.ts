import { randomUUID } from 'node:crypto';
import { Hono, type Context, type Handler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { etag, RETAINED_304_HEADERS } from 'hono/etag';
import { createMiddleware } from 'hono/factory';
import { routePath } from 'hono/route';
import type { AppService } from '../apps/app-service.js';
import { isAppId } from '../apps/app-id.js';
import type { AuditLog } from '../audit.js';
import type { Config } from '../config.js';
import { TokenmintError } from '../errors.js';
import type { Keyring } from '../keyring/keyring.js';
import { describeError, requestLineLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { bearerCredentials, hashSecret, secretMatches } from '../secret.js';
import type { Repository } from '../storage/repository.js';
import type { SessionService } from '../tokens/session-service.js';
import { appAuth, refuseBlockedClient } from './app-auth.js';
import type { AppKeyLimiter } from './app-key-limiter.js';
import type { AppEnv } from './env.js';
import { jwksHandler } from './jwks.js';
import { openApiDocument } from './openapi.js';
import { isCallerId } from './schemas.js';
import { securityHeaders } from './security-headers.js';
import { tokenRoutes } from './token-routes.js';

export interface AppDeps {
  repo: Repository;
  apps: AppService;
  sessions: SessionService;
  keyring: Keyring;
  audit: AuditLog;
  limiter: AppKeyLimiter;
  logger: Logger;
  /** Absent: no /metrics route. */
  metrics?: Metrics;
  config: Pick<Config, 'trustProxyHeader' | 'jwksMaxAgeSeconds' | 'metricsToken' | 'tls'>;
}

const MAX_BODY_BYTES = 64 * 1024;

/**
 * The path's app id, for the log, if it can be one: a backend that swapped its app id and app key
 * would otherwise have the key logged (and a pasted token; up to 16 KB of whatever was sent).
 */
const loggableAppId = (appId: string | undefined) => (appId !== undefined && isAppId(appId) ? appId : undefined);

/**
 * One structured line per request — route, app, status, duration, its request id, and why it
 * failed; never a body — and the request metrics.
 */
function requestLog(logger: Logger, metrics: Metrics | undefined) {
  const lines = requestLineLogger(logger);
  return createMiddleware<AppEnv>(async function requestLog(c, next) {
    const started = performance.now();
    await next();
    const status = c.res.status;
    const route = routePath(c, -1);
    const ms = performance.now() - started;
    metrics?.observeRequest(route, c.req.method, status, ms / 1000);
    lines[status >= 500 ? 'error' : 'info']({
      method: c.req.method,
      route,
      app_id: loggableAppId(c.req.param('app_id')),
      status,
      duration_ms: Math.round(ms * 100) / 100,
      request_id: c.get('requestId'),
      reason: c.get('reason'),
    });
  });
}

/**
 * The caller's `X-Request-Id` (letters, digits, `_` and `-`, up to 128), else a new UUID: answered back
 * and logged, so that a backend's failed call can be found in this log. hono's requestId middleware
 * does the same but would take an app key (`tmk_` and base64url) pasted there, and log it.
 */
function requestIds() {
  return createMiddleware<AppEnv>(async function requestId(c, next) {
    const given = c.req.header('x-request-id');
    const id = given !== undefined && isCallerId(given) ? given : randomUUID();
    c.set('requestId', id);
    c.header('X-Request-Id', id);
    await next();
  });
}

/** securityHeaders() on every answer, errors included; set before the route runs, so that no route can forget them. */
function withSecurityHeaders(headers: ReturnType<typeof securityHeaders>) {
  return createMiddleware<AppEnv>(async function withSecurityHeaders(c, next) {
    for (const [name, value] of headers) c.header(name, value);
    await next();
  });
}

/**
 * A path the API has, asked with a method it does not have for it: 405 with the methods it has
 * (RFC 9110 §15.5.6), not a 404 that reads as a wrong URL. Called once every route is in; hono
 * answers HEAD with the GET route.
 */
function answerOtherMethods(app: Hono<AppEnv>) {
  const methodsOf = new Map<string, Set<string>>();
  for (const { method, path } of app.routes) if (method !== 'ALL') methodsOf.set(path, (methodsOf.get(path) ?? new Set()).add(method));
  for (const [path, methods] of methodsOf) {
    const allow = [...(methods.has('GET') ? ['GET', 'HEAD'] : []), ...[...methods].filter((m) => m !== 'GET')].join(', ');
    app.all(path, function methodNotAllowed(c) {
      c.header('Allow', allow);
      return c.json({ message: 'method not allowed' }, 405);
    });
  }
}

/** GET /metrics in Prometheus text format; behind a bearer token when METRICS_TOKEN is set. */
function metricsHandler(metrics: Metrics, token: string | undefined): Handler<AppEnv> {
  const tokenHash = token === undefined ? undefined : hashSecret(token);
  return async function metricsRoute(c) {
    const presented = bearerCredentials(c.req.header('authorization')) ?? '';
    if (tokenHash !== undefined && !secretMatches(presented, tokenHash)) return c.json({ message: 'metrics token required' }, 401);
    return c.body(await metrics.text(), 200, { 'content-type': metrics.registry.contentType });
  };
}

/**
 * 413 for a body over `maxSize`. A request that declares its Content-Length is judged by the header
 * alone (Node's parser never delivers more than it declares); only a chunked body is counted by
 * hono's bodyLimit, whose reading of `c.req.raw.body` turns node-server's lightweight request into a
 * full WHATWG Request with streams — a sixth of the cost of a renew.
 */
function limitBody(maxSize: number) {
  const tooLarge = (c: Context) => c.json({ message: 'request too large' }, 413);
  const counting = bodyLimit({ maxSize, onError: tooLarge });
  return createMiddleware<AppEnv>(async function limitBody(c, next) {
    const declared = c.req.header('content-length');
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    if (declared !== undefined && c.req.header('transfer-encoding') === undefined) return Number(declared) > maxSize ? tooLarge(c) : next();
    return counting(c, next);
  });
}

/** The HTTP API of contract §3; no I/O of its own beyond what `deps` do. */
export function createApp(deps: AppDeps) {
  const app = new Hono<AppEnv>();
  app.use(requestIds());
  const security = securityHeaders({ https: deps.config.tls !== undefined });
  app.use(withSecurityHeaders(security));
  app.use(requestLog(deps.logger, deps.metrics));
  app.use('/app/*', limitBody(MAX_BODY_BYTES));
  // Liveness: the process serves HTTP. Nothing else, so that a database problem does not get every
  // process restarted in a loop; /readyz says whether to send it traffic.
  app.get('/healthz', function health(c) {
    return c.json({ status: 'ok' });
  });
  // Readiness: the database answers a read (the catalog version, a few µs).
  app.get('/readyz', async function ready(c) {
    try {
      await deps.repo.catalogVersion();
    } catch (error) {
      c.set('reason', 'database unreadable');
      deps.logger.error({ request_id: c.get('requestId'), error: describeError(error) }, 'not ready');
      return c.json({ message: 'not ready' }, 503);
    }
    return c.json({ status: 'ok' });
  });
  if (deps.metrics) app.get('/metrics', metricsHandler(deps.metrics, deps.config.metricsToken));
  // The API described (OpenAPI 3.1): public, like the routes' documentation in the README.
  app.get('/openapi.json', function openApi(c) {
    c.header('Cache-Control', 'public, max-age=300');
    return c.json(openApiDocument());
  });
  // Readable from any page. A page's fetch that adds a header of its own is preflighted (OPTIONS),
  // answered here for a day (browsers keep it at most 2 h to 24 h).
  // A blocked address's 429 is readable there too, with its Retry-After; its preflight is answered
  // as any other, so that the page sees the 429 rather than an opaque CORS failure.
  const jwksCors = cors({ origin: '*', allowMethods: ['GET', 'HEAD'], exposeHeaders: ['ETag', 'Retry-After'], maxAge: 86_400 });
  const trustProxyHeader = deps.config.trustProxyHeader;
  app.options('/app/:app_id/jwks.json', jwksCors);
  app.get(
    '/app/:app_id/jwks.json',
    jwksCors,
    refuseBlockedClient({ limiter: deps.limiter, trustProxyHeader }),
    // A 304 keeps what every answer says (hono's etag keeps only the cache headers of RFC 9110 §15.4.5).
    etag({ retainedHeaders: [...RETAINED_304_HEADERS, 'x-request-id', 'access-control-allow-origin', 'access-control-expose-headers', ...security.map(([name]) => name)] }),
    jwksHandler({ repo: deps.repo, keyring: deps.keyring, maxAgeSeconds: deps.config.jwksMaxAgeSeconds }),
  );
  app.route('/app/:app_id', tokenRoutes({ sessions: deps.sessions, auth: appAuth({ ...deps, trustProxyHeader }) }));
  answerOtherMethods(app);

  app.notFound((c) => c.json({ message: 'not found' }, 404));
  app.onError(function errorHandler(error, c) {
    if (error instanceof TokenmintError) {
      c.set('reason', error.reason);
      if (error.options.retryAfterSeconds !== undefined) c.header('Retry-After', String(error.options.retryAfterSeconds));
      return c.json(error.toBody(), error.status);
    }
    deps.logger.error({ request_id: c.get('requestId'), error: describeError(error) }, 'unhandled error');
    return c.json({ message: 'internal error' }, 500);
  });
  return app;
}
