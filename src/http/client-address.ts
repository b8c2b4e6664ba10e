import type { Context } from 'hono';
import type { AppEnv } from './env.js';

/**
 * The address the request came from: the last entry of `trustedHeader` (what the trusted proxy in
 * front of us saw) when one is configured, else the socket's peer address.
 */
export function clientAddress(c: Context<AppEnv>, trustedHeader: string | undefined): string {
  if (trustedHeader) {
    const forwarded = c.req.header(trustedHeader)?.split(',').pop()?.trim();
    if (forwarded) return forwarded;
  }
  return c.env?.incoming?.socket?.remoteAddress ?? 'unknown';
}
