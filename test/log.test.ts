import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, requestLineLogger } from '../src/log.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('info', destination), lines };
}

describe('logger redaction', () => {
  it('censors secret keys at the top level and one level down', () => {
    const { logger, lines } = capture();
    logger.info({ app_key: 'k', headers: { authorization: 'Bearer k' }, body: { refresh_token: 'r', auth_token: 'a', sub: 'u' } });
    expect(lines[0]).toMatchObject({
      app_key: '[redacted]',
      headers: { authorization: '[redacted]' },
      body: { refresh_token: '[redacted]', auth_token: '[redacted]', sub: 'u' },
    });
  });

  it('the request-line logger still censors secret keys at the top level', () => {
    const { logger, lines } = capture();
    requestLineLogger(logger).info({ route: '/app/:app_id/renew', authorization: 'Bearer k', refresh_token: 'r', status: 200 });
    expect(lines[0]).toMatchObject({ service: 'tokenmint', route: '/app/:app_id/renew', authorization: '[redacted]', refresh_token: '[redacted]', status: 200 });
  });
});
