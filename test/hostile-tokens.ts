import fc from 'fast-check';

// Hostile variations of a real token, and fast-check's settings, for the property tests of the server
// (refresh tokens) and of tokenmint/hono (access cookies).

/** fast-check's settings: `npm test` runs a fixed seed; `npm run test:fuzz` runs many more cases (FUZZ_RUNS, FUZZ_SEED). */
export const fuzzParams = { numRuns: Number(process.env.FUZZ_RUNS ?? 150), seed: Number(process.env.FUZZ_SEED ?? 20261122), endOnFailure: true };

const b64url = (s: string) => Buffer.from(s).toString('base64url');
const segments = (token: string) => token.split('.') as [string, string, string];

/** Hostile variations of `token`: cut, replaced, re-encoded, with other claims or headers, huge. */
export const hostileToken = (token: string) =>
  fc.oneof(
    fc.nat({ max: token.length - 1 }).map((n) => token.slice(0, n)),
    fc.string({ unit: 'grapheme', maxLength: 200 }),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.base64String({ maxLength: 400 }).map((s) => `${segments(token)[0]}.${s}.${segments(token)[2]}`),
    fc.jsonValue().map((v) => `${segments(token)[0]}.${b64url(JSON.stringify(v))}.${segments(token)[2]}`),
    fc.dictionary(fc.constantFrom('iss', 'jid', 'iat', 'nbf', 'exp', 'type', '__proto__', 'constructor'), fc.oneof(fc.double(), fc.bigInt().map(String), fc.string(), fc.constant(1e308), fc.constant(-1), fc.object())).map(
      (claims) => `${segments(token)[0]}.${b64url(JSON.stringify(claims))}.${segments(token)[2]}`,
    ),
    // Duplicate keys: the second "jid" of the text is one a JSON parser may prefer.
    fc.string({ maxLength: 30 }).map((jid) => {
      const payload = Buffer.from(segments(token)[1], 'base64url').toString().replace(/}$/, `,"jid":${JSON.stringify(jid)}}`);
      return `${segments(token)[0]}.${b64url(payload)}.${segments(token)[2]}`;
    }),
    fc.jsonValue({ maxDepth: 30 }).map((header) => `${b64url(JSON.stringify(header))}.${segments(token)[1]}.${segments(token)[2]}`),
    fc.integer({ min: 1, max: 200_000 }).map((n) => `${segments(token)[0]}.${'A'.repeat(n)}.${segments(token)[2]}`),
    fc.constantFrom('.', '..', '...', 'a.b.c', '%00.%00.%00', '\u0000', token.toUpperCase(), `${token}.`, ` ${token}`),
  );
