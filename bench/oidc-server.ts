// The peer: panva's oidc-provider with an ES256 signing key and refresh-token rotation, answering its
// own refresh_token grant. Its tokens live in a Map (below): the peer persists nothing, where
// tokenmint commits every renew to SQLite. Used only by the benchmark.
//
// POST /bench/mint opens a session the way a login would end: a Grant and a RefreshToken made through
// the provider's own models (no browser flow), answering {"refresh_token": "..."}.
import http from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

/**
 * oidc-provider's own development adapter is an LRU of 1,000 entries: under load it evicts live
 * grants and refresh tokens, and renews fail. This one keeps everything for the life of the process.
 */
class MapAdapter {
  static readonly stores = new Map<string, Map<string, Record<string, unknown>>>();
  private readonly store: Map<string, Record<string, unknown>>;
  constructor(name: string) {
    this.store = MapAdapter.stores.get(name) ?? new Map();
    MapAdapter.stores.set(name, this.store);
  }
  async upsert(id: string, payload: Record<string, unknown>) {
    this.store.set(id, payload);
  }
  async find(id: string) {
    return this.store.get(id);
  }
  async findByUid(uid: string) {
    return [...this.store.values()].find((p) => p.uid === uid);
  }
  async findByUserCode(userCode: string) {
    return [...this.store.values()].find((p) => p.userCode === userCode);
  }
  async consume(id: string) {
    const payload = this.store.get(id);
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id: string) {
    this.store.delete(id);
  }
  async revokeByGrantId(grantId: string) {
    for (const store of MapAdapter.stores.values()) for (const [id, p] of store) if (p.grantId === grantId) store.delete(id);
  }
}

const CLIENT = { client_id: 'bench', client_secret: 'bench-secret-bench-secret-bench-secret' };

const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const server = http.createServer();
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const { port } = server.address() as { port: number };
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      ...CLIENT,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['https://app.example/callback'],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [{ ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'bench' }] },
  adapter: MapAdapter,
  rotateRefreshToken: true,
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  ttl: { RefreshToken: 3 * 3600, AccessToken: 3600, IdToken: 3600, Grant: 3 * 3600 },
});
provider.on('server_error', (_ctx, error) => process.stderr.write(`oidc-provider error: ${String(error)}\n`));

async function mint(sub: string): Promise<string> {
  const grant = new provider.Grant({ accountId: sub, clientId: CLIENT.client_id });
  grant.addOIDCScope('openid offline_access');
  const grantId = await grant.save();
  const client = await provider.Client.find(CLIENT.client_id);
  const token = new provider.RefreshToken({
    accountId: sub,
    client: client!,
    grantId,
    scope: 'openid offline_access',
    gty: 'authorization_code',
    authTime: Math.floor(Date.now() / 1000),
    iiat: Math.floor(Date.now() / 1000),
    rotations: 0,
  });
  return token.save();
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url === '/bench/mint') {
    mint(`user-${Math.random().toString(36).slice(2)}`).then(
      (refreshToken) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ refresh_token: refreshToken })),
      (error: Error) => res.writeHead(500).end(error.message),
    );
    return;
  }
  callback(req, res);
});
process.stderr.write(`oidc-provider listening on ${issuer}\n`);
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
