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
 * What the app-key limiter counts a client by: an IPv4 address as it is; an IPv6 address in one
 * spelling (eight groups, no zone) when `ipv6PrefixBits` is 128, else the network of that prefix
 * (`2001:db8:a:b:0:0:0:0/64`); an IPv4-mapped IPv6 address as its IPv4 address; anything else (a
 * proxy's header that is not an address) as it is.
 */
export function clientNetwork(address: string, ipv6PrefixBits: number): string {
  const bare = address.split('%')[0]!; // no zone
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(bare);
  if (mapped) return mapped[1]!;
  if (!isIPv6(bare)) return address;
  // A dotted IPv4 ending stands for two groups.
  const groupsOf = (part: string | undefined) =>
    !part
      ? []
      : part.split(':').flatMap((g) => {
          if (!g.includes('.')) return [g];
          const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
          return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
        });
  const [head, tail] = bare.split('::');
  const headGroups = groupsOf(head);
  const tailGroups = groupsOf(tail);
  const zeros = Array<string>(8 - headGroups.length - tailGroups.length).fill('0'); // what "::" stands for
  const groups = [...headGroups, ...zeros, ...tailGroups].map((g, i) => {
    const kept = Math.max(0, Math.min(16, ipv6PrefixBits - 16 * i)); // bits of this group inside the prefix
    return (parseInt(g, 16) & ~(0xffff >> kept) & 0xffff).toString(16);
  });
  return ipv6PrefixBits === 128 ? groups.join(':') : `${groups.join(':')}/${ipv6PrefixBits}`;
}
