import { isIPv6 } from 'node:net';

/** A listening address as the host of a URL: an IPv6 one in brackets (`::` is `http://[::]:8080`). */
export const urlHost = (address: string): string => (isIPv6(address) ? `[${address}]` : address);
