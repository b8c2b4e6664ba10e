/**
 * The `ip` field: an IPv4 address, or an IPv6 address in any RFC 4291 text form (`::ffff:192.0.2.1`
 * and its other embedded-IPv4 forms included) with an optional RFC 4007 zone (`fe80::1%eth0`), as
 * Node's `req.socket.remoteAddress` gives them. It accepts what `node:net`'s `isIP` accepts, but for
 * a zone over 64 characters, so the field stays small enough to copy into every auth token.
 *
 * One regular expression, rather than zod's ipv4/ipv6 formats, because /openapi.json carries it as the
 * field's `pattern`: zod checks IPv6 with `new URL`, beyond what its exported pattern says, and the
 * document refused the embedded-IPv4 forms the server took. (The same construction as `node:net`'s.)
 */
const v4Part = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])';
const v4 = `(?:${v4Part}\\.){3}${v4Part}`;
const h = '[0-9a-fA-F]{1,4}';
const v6 = [
  `(?:${h}:){7}(?:${h}|:)`,
  `(?:${h}:){6}(?:${v4}|:${h}|:)`,
  `(?:${h}:){5}(?::${v4}|(?::${h}){1,2}|:)`,
  `(?:${h}:){4}(?:(?::${h}){0,1}:${v4}|(?::${h}){1,3}|:)`,
  `(?:${h}:){3}(?:(?::${h}){0,2}:${v4}|(?::${h}){1,4}|:)`,
  `(?:${h}:){2}(?:(?::${h}){0,3}:${v4}|(?::${h}){1,5}|:)`,
  `(?:${h}:){1}(?:(?::${h}){0,4}:${v4}|(?::${h}){1,6}|:)`,
  `(?::(?:(?::${h}){0,5}:${v4}|(?::${h}){1,7}|:))`,
].join('|');
const zone = '%[0-9a-zA-Z.:-]{1,64}';

export const IP_ADDRESS = new RegExp(`^(?:${v4}|(?:${v6})(?:${zone})?)$`);
