// The ceiling: what any server that answers a renew over HTTP with two fresh ES256 tokens reaches on
// this machine with this load generator. One process per core like tokenmint (node:cluster), plain
// node:http, the body parsed, two node:crypto signatures; no single-use check, no storage, no app key,
// no validation, no logging. Not a server to run; a bound to read the others against. Used only by
// the benchmark.
import cluster from 'node:cluster';
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';

if (cluster.isPrimary) {
  for (let i = 0; i < os.availableParallelism(); i++) cluster.fork();
  let announced = false;
  cluster.on('listening', (_worker, address) => {
    if (!announced) process.stderr.write(`ceiling listening on http://127.0.0.1:${address.port}\n`);
    announced = true;
  });
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill();
    process.exit(0);
  });
} else {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = randomUUID();
  const publicKeyBase64 = Buffer.from(publicKey.export({ type: 'spki', format: 'pem' })).toString('base64');
  const header = Buffer.from(JSON.stringify({ alg: 'ES256', kid, typ: 'JWT' })).toString('base64url');
  const jwt = (claims: object) => {
    const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    return `${input}.${sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
  };
  const pair = () => {
    const jid = randomUUID();
    const iat = Math.floor(Date.now() / 1000);
    return { auth_token: jwt({ sub: 'user', jid, iat, exp: iat + 3600 }), refresh_token: jwt({ jid, iat, exp: iat + 10800, type: 'refresh' }), key_id: kid, public_key: publicKeyBase64 };
  };
  http
    .createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        if (req.url !== '/issue' && typeof (JSON.parse(body) as { refresh_token?: unknown }).refresh_token !== 'string') {
          res.writeHead(400, { 'content-type': 'application/json' }).end('{"message":"invalid request"}');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(pair()));
      });
    })
    .listen(Number(process.env.PORT ?? 0), '127.0.0.1');
}
