import { describe, expect, it } from 'vitest';
import { client, decodePart, harness, verifyIndependently, type Pair } from '../helpers.js';

async function setup() {
  const h = await harness();
  const { appKey } = await h.createApp('acme', { refreshNbfSeconds: 0, reuseGraceSeconds: 10 });
  const issued = (await (await h.post('/app/acme/issue', { sub: 'u', ...client }, appKey)).json()) as Pair;
  const renew = (token: string) => h.post('/app/acme/renew', { refresh_token: token, ...client }, appKey);
  return { h, appKey, issued, renew };
}

const childOf = async (h: Awaited<ReturnType<typeof harness>>, parentJid: string) => (await h.tm.repo.findRefreshToken(parentJid))?.child;

describe('refresh token rotation and reuse (contract §5)', () => {
  it('a repeat within reuse-grace answers 200 with the same child session; both child tokens renew once', async () => {
    const { h, issued, renew } = await setup();
    const first = (await (await renew(issued.refresh_token)).json()) as Pair;
    h.clock.advance(10);
    const again = await renew(issued.refresh_token);
    expect(again.status).toBe(200);
    const repeat = (await again.json()) as Pair;
    const childJid = decodePart(first.refresh_token, 1).jid;
    expect(decodePart(repeat.refresh_token, 1)).toEqual(decodePart(first.refresh_token, 1));
    expect(decodePart(repeat.auth_token, 1)).toEqual(decodePart(first.auth_token, 1));
    expect(verifyIndependently(repeat.auth_token, repeat.public_key).payload.jid).toBe(childJid);
    // The child renews normally with either string (they carry the same claims).
    expect((await renew(repeat.refresh_token)).status).toBe(200);
  });

  it('a repeat after reuse-grace is reuse: 401 and the whole session is revoked, newest child included', async () => {
    const { h, issued, renew } = await setup();
    const child = (await (await renew(issued.refresh_token)).json()) as Pair;
    const grandchild = (await (await renew(child.refresh_token)).json()) as Pair;
    h.clock.advance(11);
    const reuse = await renew(issued.refresh_token);
    expect(reuse.status).toBe(401);
    expect(h.logs.some((l) => l.level === 40 && l.event === 'security.refresh_reuse' && l.session_id && l.sub === 'u')).toBe(true);
    const res = await renew(grandchild.refresh_token);
    expect(res.status).toBe(401);
    expect(h.logs.at(-1)).toMatchObject({ reason: 'session revoked (reuse)' });
  });

  it('the grace counts from the first use to the millisecond: the last one repeats, the next is reuse', async () => {
    const { h, issued, renew } = await setup();
    h.clock.advance(0.5); // the first use, half a second into the token's iat second
    const first = (await (await renew(issued.refresh_token)).json()) as Pair;
    h.clock.advance(10);
    const repeat = (await (await renew(issued.refresh_token)).json()) as Pair;
    expect(decodePart(repeat.refresh_token, 1).jid).toBe(decodePart(first.refresh_token, 1).jid);
    h.clock.advance(0.001);
    expect((await renew(issued.refresh_token)).status).toBe(401);
    expect((await renew(first.refresh_token)).status).toBe(401); // the session is revoked
  });

  it('50 racing renews of one token in one process: all 200 within grace, one child only', async () => {
    const { h, issued, renew } = await setup();
    const answers = await Promise.all(Array.from({ length: 50 }, () => renew(issued.refresh_token)));
    expect(answers.map((r) => r.status)).toEqual(Array(50).fill(200));
    const jids = new Set(await Promise.all(answers.map(async (r) => decodePart(((await r.json()) as Pair).refresh_token, 1).jid)));
    expect(jids.size).toBe(1);
    const parentJid = String(decodePart(issued.refresh_token, 1).jid);
    expect((await childOf(h, parentJid))?.jid).toBe([...jids][0]);
  });

  it('a used token whose session was revoked by reuse stays refused even within a later grace', async () => {
    const { h, issued, renew } = await setup();
    await renew(issued.refresh_token);
    h.clock.advance(11);
    expect((await renew(issued.refresh_token)).status).toBe(401);
    h.clock.advance(-5);
    expect((await renew(issued.refresh_token)).status).toBe(401);
  });
});
