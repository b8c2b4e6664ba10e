import type { Context } from 'hono';
import type { z } from 'zod';
import { invalidRequest, TokenmintError, type FieldError } from '../errors.js';

const toFieldErrors = (issues: z.core.$ZodIssue[]): FieldError[] =>
  issues.map((issue) => ({ path: issue.path.map(String).join('.'), message: issue.message }));

/**
 * The request body parsed as JSON and validated by `schema`, whatever the Content-Type says (a
 * client that forgot the header gets a body error, not a confusing "field missing").
 */
export async function readJson<T>(c: Context, schema: z.ZodType<T>): Promise<T> {
  let text: string;
  try {
    text = await c.req.text();
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
    value = JSON.parse(text);
  } catch {
    // A compressed body is not read (no request decompression, so no zip bomb); say so rather than "not JSON".
    const encoding = c.req.header('content-encoding')?.trim();
    const compressed = encoding && encoding.toLowerCase() !== 'identity' ? `, and Content-Encoding ${encoding} is not supported: send it uncompressed` : '';
    throw invalidRequest([{ path: '', message: `body is not valid JSON${compressed}` }]);
  }
  const result = schema.safeParse(value);
  if (!result.success) throw invalidRequest(toFieldErrors(result.error.issues));
  return result.data;
}
