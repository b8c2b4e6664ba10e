import type { Context } from 'hono';
import type { z } from 'zod';
import { invalidRequest, TokenmintError, type FieldError } from '../errors.js';

const toFieldErrors = (issues: z.core.$ZodIssue[]): FieldError[] =>
  issues.map((issue) => ({ path: issue.path.map(String).join('.'), message: issue.message }));

/**
 * JSON is UTF-8 (RFC 8259 §8.1), whatever charset a Content-Type names. Bytes that are not UTF-8 are
 * refused rather than read as U+FFFD, which would make two subjects sent in Latin-1 one subject. A
 * leading byte order mark is skipped, as RFC 8259 allows.
 */
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The request body parsed as JSON and validated by `schema`, whatever the Content-Type says (a
 * client that forgot the header gets a body error, not a confusing "field missing").
 */
export async function readJson<T>(c: Context, schema: z.ZodType<T>): Promise<T> {
  let bytes: ArrayBuffer;
  try {
    bytes = await c.req.arrayBuffer();
  } catch {
    // The connection broke mid-body (or Node closed it with a 408): no one reads this answer; the
    // log line says why it is not a client's bad JSON.
    throw new TokenmintError('ERR_INVALID_REQUEST', 'invalid request', {
      errors: [{ path: '', message: 'body not received' }],
      reason: 'body not received: connection closed',
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch (error) {
    // A compressed body is not read (no request decompression, so no zip bomb); say so rather than "not JSON".
    const encoding = c.req.header('content-encoding')?.trim();
    const why =
      encoding && encoding.toLowerCase() !== 'identity' ? `, and Content-Encoding ${encoding} is not supported: send it uncompressed`
      : error instanceof SyntaxError ? '' // JSON.parse's
      : ': it is not UTF-8'; // the decoder's TypeError
    throw invalidRequest([{ path: '', message: `body is not valid JSON${why}` }]);
  }
  const result = schema.safeParse(value);
  if (!result.success) throw invalidRequest(toFieldErrors(result.error.issues));
  return result.data;
}
