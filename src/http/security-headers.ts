/**
 * Headers on every answer, for a browser that reaches the API (OWASP REST Security Cheat Sheet): its
 * JSON is never sniffed as HTML or script, never framed, and loads nothing. HSTS only when tokenmint
 * serves HTTPS itself; behind a proxy that ends TLS, the proxy is the one to send it. Not hono's
 * secureHeaders: its defaults are made for HTML pages, and it writes after the route, through the
 * answer's headers, which makes @hono/node-server build a WHATWG Headers for every answer.
 */
export function securityHeaders({ https }: { https: boolean }): ReadonlyArray<readonly [string, string]> {
  const headers: Array<[string, string]> = [
    ['X-Content-Type-Options', 'nosniff'],
    ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'"],
  ];
  if (https) headers.push(['Strict-Transport-Security', 'max-age=31536000']);
  return headers;
}
