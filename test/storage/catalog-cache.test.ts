import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { withCatalogCache } from '../../src/storage/catalog-cache.js';
import { openSqlite } from '../../src/storage/sqlite/open.js';
import { createSqliteRepository } from '../../src/storage/sqlite/sqlite-repository.js';
import { harness, onCleanup, tempDir } from '../helpers.js';

describe('catalog cache', () => {
  it('sees a change written by another connection on the next event-loop turn', async () => {
    const h = await harness();
    await h.createApp('acme');
    const cached = h.tm.repo; // openTokenmint wraps its repository in the cache
    const other = createSqliteRepository(openSqlite(path.join(h.dir, 'tokenmint.db')));
    onCleanup(() => other.close());

    expect((await cached.findApp('acme'))?.disabled).toBe(false);
    await other.updateApp('acme', { disabled: true }, Date.now());
    await nextTurn();
    expect((await cached.findApp('acme'))?.disabled).toBe(true);
  });

  it('sees its own writes at once, and keeps no entry for an app that does not exist', async () => {
    const repo = createSqliteRepository(openSqlite(path.join(tempDir(), 'c.db')));
    onCleanup(() => repo.close());
    let reads = 0;
    const counting = { ...repo, findApp: (id: string) => (reads++, repo.findApp(id)) };
    const cached = withCatalogCache(counting);

    expect(await cached.findApp('ghost')).toBeUndefined();
    expect(await cached.findApp('ghost')).toBeUndefined();
    expect(reads).toBe(2); // a miss is not cached: made-up ids cannot grow memory

    const h = await harness();
    const { appId } = await h.createApp('acme');
    const record = (await h.tm.repo.findApp(appId))!;
    await cached.createApp(record, []);
    expect((await cached.findApp(appId))?.disabled).toBe(false);
    await cached.findApp(appId);
    expect(reads).toBe(3); // the second lookup came from the cache
    await cached.updateApp(appId, { disabled: true }, Date.now());
    expect((await cached.findApp(appId))?.disabled).toBe(true); // same turn, own write
  });
});
