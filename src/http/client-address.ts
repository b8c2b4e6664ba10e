import { isIPv6 } from 'node:net';
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

/**
 * The network one client controls, which the app-key limiter counts by: an IPv4 address as it is, an
 * IPv6 address's /64 (a single host or customer is given at least that much, and can use any address
 * in it), an IPv4-mapped IPv6 address as its IPv4 address; anything else (a proxy's header that is
 * not an address) as it is.
 */
export function clientNetwork(address: string): string {
  const bare = address.split('%')[0]!; // no zone
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(bare);
  if (mapped) return mapped[1]!;
  if (!isIPv6(bare)) return address;
  const [head = '', tail] = bare.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  // A dotted IPv4 ending stands for two groups; "::" for as many zero groups as are missing.
  const tailWidth = tailGroups.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailWidth).fill('0');
  const groups = [...headGroups, ...zeros, ...tailGroups];
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}
