import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { warnIfUnsupportedNode } from '../src/start-warnings.js';

describe('the Node version at start', () => {
  it('is warned of from Node 24 on, where better-sqlite3 12 can abort the process; 20 and 22 get no warning', () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
    for (const version of ['20.12.0', '20.20.2', '22.23.3']) warnIfUnsupportedNode(logger, version);
    expect(lines).toEqual([]);
    warnIfUnsupportedNode(logger, '24.21.0');
    warnIfUnsupportedNode(logger, '26.0.0');
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toMatchObject([
      { level: 40, node: '24.21.0', msg: expect.stringMatching(/^Node 24\.21\.0 is not supported: with it, better-sqlite3 12 can abort the process/) },
      { level: 40, node: '26.0.0' },
    ]);
  });
});
