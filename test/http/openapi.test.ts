import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { client, harness, type Pair } from '../helpers.js';

type Operation = { requestBody?: { content: Record<string, { schema: object }> }; responses: Record<string, { content?: Record<string, { schema: object }> }> };
type Document = { paths: Record<string, Record<string, Operation>> };

/** GET /openapi.json of a fresh server, checked against the OpenAPI 3.1 schema, with its $refs resolved. */
async function documented() {
  const h = await harness();
  const res = await h.app.request('/openapi.json');
  expect(res.status).toBe(200);
  expect(res.headers.get('cache-control')).toBe('public, max-age=300');
  const validator = new Validator();
  const result = await validator.validate((await res.json()) as Record<string, unknown>);
  expect(result.errors ?? []).toEqual([]);
  expect(validator.version).toBe('3.1');
  // Formats are zod's patterns too, which are what the server checks.
  const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  return { h, doc: validator.resolveRefs() as unknown as Document, ajv };
}

describe('GET /openapi.json', () => {
  it('is valid OpenAPI 3.1 and describes every route the server answers, no more', async () => {
    const { h, doc } = await documented();
    const served = h.app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
    const described = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).filter((k) => k !== 'parameters').map((method) => `${method.toUpperCase()} ${path}`));
    expect(new Set(described)).toEqual(new Set(served));
  });

  it('request schemas accept exactly what the server accepts: a body the schema refuses gets 400, one it accepts never does', async () => {
    const { h, doc, ajv } = await documented();
    const { appKey } = await h.createApp('acme', { refreshNbfSeconds: 0 });
    const pair = (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey)).json()) as Pair;
    const valid: Record<string, Record<string, unknown>> = {
      issue: { sub: 'u', ...client, personal: { name: 'Ann' } },
      renew: { refresh_token: pair.refresh_token, ...client },
      revoke: { refresh_token: 'x' },
      'revoke-subject': { sub: 'u', except_refresh_token: 'x' },
      sessions: { sub: 'u', refresh_token: pair.refresh_token },
      'revoke-session': { sub: 'u', session_id: 'x' },
      'update-personal': { sub: 'u', personal: null },
    };
    // Each field of a valid body in turn: gone, and replaced by values of the wrong type or size.
    // (The 4 KiB byte limit of `personal` is in its description only: JSON Schema cannot say it.)
    // Emoji: one character each for JSON Schema's maxLength, two UTF-16 units for JavaScript's length.
    const emoji = (n: number) => '\u{1F600}'.repeat(n);
    const replacements = [undefined, null, 7, '', 'x'.repeat(256), 'x'.repeat(1025), 'x'.repeat(8193), emoji(64), emoji(65), emoji(255), emoji(256), emoji(1024), emoji(1025), emoji(4097), '1.2.3', '01.2.3.4', '::1', '2001:db8::1', '::ffff:192.0.2.1', '1:2:3:4:5:6:192.0.2.1', 'fe80::1%eth0', `fe80::1%${'x'.repeat(65)}`, '192.0.2.1%eth0', [1], {}, { a: 1 }];
    let refused = 0;
    for (const [route, body] of Object.entries(valid)) {
      const schema = doc.paths[`/app/{app_id}/${route}`]!.post!.requestBody!.content['application/json']!.schema;
      const check = ajv.compile(schema);
      for (const candidate of [body, ...Object.keys(body).flatMap((field) => replacements.map((value) => ({ ...body, [field]: value })))]) {
        const res = await h.post(`/app/acme/${route}`, candidate, appKey);
        expect([route, candidate, res.status === 400], JSON.stringify(check.errors)).toEqual([route, candidate, !check(candidate)]);
        if (res.status === 400) refused++;
      }
    }
    expect(refused).toBeGreaterThan(100); // the bodies did test the refusals
  });

  it('real answers match the documented ones: pairs, counts, sessions, JWKS, probes and refusals', async () => {
    const { h, doc, ajv } = await documented();
    const { appKey } = await h.createApp('acme', { refreshNbfSeconds: 0 });
    const matches = async (method: 'get' | 'post', path: string, res: Response) => {
      const documentedPath = path.replace(/^\/app\/acme\//, '/app/{app_id}/');
      const schema = doc.paths[documentedPath]![method]!.responses[String(res.status)]?.content?.['application/json']?.schema;
      expect(schema, `${method} ${path} ${res.status} is documented`).toBeDefined();
      const check = ajv.compile(schema!);
      const body: unknown = await res.json();
      expect(check(body), `${path} ${res.status}: ${JSON.stringify(check.errors)}`).toBe(true);
      return body;
    };
    const post = async (route: string, body: unknown, key = appKey) => matches('post', `/app/acme/${route}`, await h.post(`/app/acme/${route}`, body, key));
    const pair = (await post('issue', { sub: 'u', ...client, personal: { name: 'Ann' } })) as Pair;
    const next = (await post('renew', { refresh_token: pair.refresh_token, ...client })) as Pair;
    const { sessions } = (await post('sessions', { sub: 'u', refresh_token: next.refresh_token })) as { sessions: Array<{ session_id: string }> };
    await post('update-personal', { sub: 'u', personal: { name: 'Annie' } });
    await post('revoke-subject', { sub: 'u', except_refresh_token: next.refresh_token });
    await post('revoke-session', { sub: 'u', session_id: sessions[0]!.session_id });
    await post('revoke', { refresh_token: next.refresh_token });
    await post('renew', { refresh_token: next.refresh_token, ...client }); // 401
    await post('issue', { sub: '' }); // 400
    await post('issue', { sub: 'u', ...client }, 'tmk_wrong'); // 403
    for (const path of ['/app/acme/jwks.json', '/app/nobody/jwks.json', '/healthz', '/readyz']) {
      const res = await h.app.request(path);
      await matches('get', path.replace('/app/nobody/', '/app/acme/'), res);
    }
    // Its 20th wrong key blocks the address: 429 on the app-key routes and on the JWKS alike.
    for (let wrong = 2; wrong <= 20; wrong++) await h.post('/app/acme/issue', {}, 'tmk_wrong');
    for (const [method, path, res] of [
      ['post', '/app/acme/issue', await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey)],
      ['get', '/app/acme/jwks.json', await h.app.request('/app/acme/jwks.json')],
    ] as const) {
      expect(res.status, path).toBe(429);
      await matches(method, path, res);
    }
  });
});
