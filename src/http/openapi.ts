import { z } from 'zod';
import { appIdSchema } from '../apps/app-settings.js';
import { VERSION } from '../version.js';
import { callerId, issueBody, renewBody, revokeBody, revokeSessionBody, revokeSubjectBody, sessionsBody, updatePersonalBody } from './schemas.js';

// GET /openapi.json: the HTTP API as OpenAPI 3.1, for backends in any language. Request bodies are
// converted from the very zod schemas the routes validate with, so the two cannot drift; answers are
// written out here (a test checks real answers against them).

type JsonSchema = Record<string, unknown>;

/**
 * The JSON Schema (2020-12, which OpenAPI 3.1 uses) of what a route accepts. A custom check (personal)
 * has none of its own: its `.meta()` describes it.
 */
function accepted(schema: z.ZodType): JsonSchema {
  const { $schema: _, ...json } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
  return json;
}

const string = { type: 'string' };
const count = { type: 'integer', minimum: 0 };
const object = (properties: Record<string, JsonSchema>, required = Object.keys(properties)): JsonSchema => ({ type: 'object', properties, required });

const schemas = {
  TokenPair: object({
    auth_token: { ...string, description: 'ES256 JWS; verify with public_key or the JWKS' },
    refresh_token: { ...string, description: 'ES256 JWS; renews once' },
    key_id: { ...string, description: 'the kid that signed both tokens' },
    public_key: { ...string, description: "base64 of that key's SPKI PEM" },
  }),
  Revoked: object({ message: { const: 'revoked' }, revoked: count }, ['message']),
  Updated: object({ message: { const: 'updated' }, updated: count }),
  Sessions: object({
    sessions: {
      type: 'array',
      maxItems: 101,
      items: object({
        session_id: string,
        created_at: { ...string, format: 'date-time' },
        expires_at: { ...string, format: 'date-time' },
        ip: { type: ['string', 'null'] },
        useragent: { type: ['string', 'null'] },
        current: { type: 'boolean' },
      }),
    },
  }),
  Jwks: object({
    keys: { type: 'array', items: object({ kty: { const: 'EC' }, crv: { const: 'P-256' }, x: string, y: string, kid: string, alg: { const: 'ES256' }, use: { const: 'sig' } }) },
  }),
  Status: object({ status: { const: 'ok' } }),
  Error: object({ message: string }),
  InvalidRequest: object({ message: { const: 'invalid request' }, errors: { type: 'array', items: object({ path: string, message: string }) } }),
};

const json = (name: keyof typeof schemas) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${name}` } } });
type Answer = { description: string; content?: Record<string, { schema: JsonSchema }>; headers?: object };
const answer = (description: string, name: keyof typeof schemas): Answer => ({ description, content: json(name) });

/** The answers every app-key route may give besides its 200. */
const refusals = {
  400: answer('not JSON; a field missing, of the wrong type or out of range', 'InvalidRequest'),
  403: answer('"invalid app key": a wrong or missing key, an unknown or a disabled app alike', 'Error'),
  413: answer('"request too large": a body over 64 KiB', 'Error'),
  429: { ...answer('"too many requests": this address failed the app key too often', 'Error'), headers: { 'Retry-After': { schema: count } } },
  500: answer('"internal error": storage failure; nothing was written', 'Error'),
};
const invalidRefreshToken = answer('"invalid refresh token", whatever the reason (the reason is in the log)', 'Error');

const appIdParameter = { name: 'app_id', in: 'path', required: true, schema: accepted(appIdSchema) };

const appRoute = (summary: string, body: z.ZodType, ok: Answer, extra: Record<number, unknown> = {}, headers: object[] = []) => ({
  parameters: [appIdParameter],
  post: {
    summary,
    ...(headers.length ? { parameters: headers } : {}),
    security: [{ appKey: [] }],
    requestBody: { required: true, content: { 'application/json': { schema: accepted(body) } } },
    responses: { 200: ok, ...extra, ...refusals },
  },
});
const publicRoute = (summary: string, ok: Answer, extra: Record<number, unknown> = {}) => ({ get: { summary, responses: { 200: ok, ...extra } } });

let document: object | undefined;

/** The OpenAPI 3.1 document of this server's HTTP API (built once). */
export function openApiDocument(): object {
  document ??= {
    openapi: '3.1.0',
    info: { title: 'tokenmint', version: VERSION, description: 'Token issuance: app-authenticated routes for an app\'s backend, JWKS for verifiers.' },
    components: {
      schemas,
      securitySchemes: { appKey: { type: 'http', scheme: 'bearer', description: 'The app key (`Authorization: Bearer tmk_…`; the bare key is accepted too)' } },
    },
    paths: {
      '/app/{app_id}/issue': appRoute('Start a session for a user your backend has logged in', issueBody, answer('a token pair', 'TokenPair'), {}, [
        {
          name: 'Idempotency-Key',
          in: 'header',
          required: false,
          description: 'One per call, the same on its retries: a repeat replaces the session its earlier attempt started (whose answer was lost). Not an app key.',
          schema: accepted(callerId),
        },
      ]),
      '/app/{app_id}/renew': appRoute('Rotate a refresh token into a new pair', renewBody, answer('a token pair', 'TokenPair'), { 401: invalidRefreshToken }),
      '/app/{app_id}/revoke': appRoute("End a refresh token's session (200 for unknown or dead tokens too)", revokeBody, answer('revoked', 'Revoked')),
      '/app/{app_id}/revoke-subject': appRoute('End every live session of a subject, or all but the one of except_refresh_token', revokeSubjectBody, answer('how many ended', 'Revoked'), {
        401: invalidRefreshToken,
      }),
      '/app/{app_id}/sessions': appRoute("A subject's live sessions, newest first (at most 100, and the caller's own)", sessionsBody, answer('the sessions', 'Sessions')),
      '/app/{app_id}/revoke-session': appRoute("End one live session of a subject", revokeSessionBody, answer('0 or 1 ended', 'Revoked')),
      '/app/{app_id}/update-personal': appRoute("Replace the personal claims of a subject's live sessions, from their next renew", updatePersonalBody, answer('how many sessions', 'Updated')),
      '/app/{app_id}/jwks.json': {
        parameters: [appIdParameter],
        ...publicRoute("The app's published keys (next, current, retired)", answer('the key set', 'Jwks'), { 304: { description: 'If-None-Match matched' }, 404: answer('unknown app', 'Error'), 429: refusals[429] }),
        options: { summary: "A browser's CORS preflight: any origin, GET and HEAD, any header, kept a day", responses: { 204: { description: 'the CORS headers' } } },
      },
      '/healthz': publicRoute('Liveness: the process serves HTTP', answer('ok', 'Status')),
      '/readyz': publicRoute('Readiness: the database answers a read', answer('ok', 'Status'), { 503: answer('"not ready"', 'Error') }),
      '/metrics': publicRoute('Prometheus metrics (Authorization: Bearer METRICS_TOKEN when set)', { description: 'text format', content: { 'text/plain': { schema: string } } }, { 401: answer('"metrics token required": METRICS_TOKEN is set and was not given', 'Error') }),
      '/openapi.json': publicRoute('This document', { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } }),
    },
  };
  return document;
}
