import { createPublicKey, verify } from 'node:crypto';
import type { RenewTarget } from './load.js';

// A fast wrong answer must not count: sampled answers are checked as a client would check them.

const part = (token: string, i: number) => JSON.parse(Buffer.from(token.split('.')[i]!, 'base64url').toString()) as Record<string, unknown>;

/** Presents each sampled (now used) refresh token again: every one must get `status`. */
async function refusesUsedTokens(target: RenewTarget, sample: Array<[string, unknown]>, status: number): Promise<number> {
  for (const [presented] of sample) {
    const { path, headers, body } = target.request(presented);
    const res = await fetch(target.origin + path, { method: 'POST', headers, body });
    await res.arrayBuffer();
    if (res.status !== status) throw new Error(`${target.name}: a used refresh token was answered ${res.status}`);
  }
  return sample.length;
}

function signatureVerifies(token: string, publicKeyPem: string): boolean {
  const [h, p, s] = token.split('.');
  return verify('sha256', Buffer.from(`${h}.${p}`), { key: createPublicKey(publicKeyPem), dsaEncoding: 'ieee-p1363' }, Buffer.from(s!, 'base64url'));
}

/**
 * For each sampled [presented refresh token, answer] of a tokenmint-shaped server: both tokens verify
 * (node:crypto, not the server's code) with the answer's `public_key`, carry the answer's `key_id`,
 * share a new `jid`.
 */
export function checkPairs(target: RenewTarget, sample: Array<[string, unknown]>): number {
  for (const [presented, answer] of sample) {
    const pair = answer as { auth_token: string; refresh_token: string; public_key: string; key_id?: string };
    const pem = Buffer.from(pair.public_key, 'base64').toString('utf8');
    if (!signatureVerifies(pair.auth_token, pem) || !signatureVerifies(pair.refresh_token, pem)) throw new Error(`${target.name}: a signature does not verify`);
    if (pair.key_id !== undefined && (part(pair.auth_token, 0).kid !== pair.key_id || part(pair.refresh_token, 0).kid !== pair.key_id)) throw new Error(`${target.name}: kid is not key_id`);
    const jid = part(pair.refresh_token, 1).jid;
    if (jid !== part(pair.auth_token, 1).jid || jid === part(presented, 1).jid) throw new Error(`${target.name}: the pair does not carry one new jid`);
  }
  return sample.length;
}

/** `checkPairs`, and once the reuse grace is over, each presented token is refused. */
export async function checkSample(target: RenewTarget, sample: Array<[string, unknown]>, graceSeconds: number): Promise<number> {
  checkPairs(target, sample);
  await new Promise((resolve) => setTimeout(resolve, (graceSeconds + 1) * 1000));
  return refusesUsedTokens(target, sample, 401);
}

/** oidc-provider's answers: a rotated (different) refresh token, and the presented one refused afterwards. */
export async function checkOidcSample(target: RenewTarget, sample: Array<[string, unknown]>): Promise<number> {
  for (const [presented, answer] of sample) {
    const { refresh_token, id_token } = answer as { refresh_token: string; id_token?: string };
    if (refresh_token === presented || typeof id_token !== 'string' || part(id_token, 0).alg !== 'ES256') throw new Error(`${target.name}: no rotated pair`);
  }
  return refusesUsedTokens(target, sample, 400);
}
