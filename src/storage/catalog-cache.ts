import type { AppRecord, Repository, SigningKeyRecord } from './repository.js';

/**
 * Apps and signing keys are read on every request and change a few times a month. This wraps a
 * repository so that they are read once per catalog version, which moves on any change from any
 * process: a CLI change is seen on the very next request, with no staleness window to reason about.
 *
 * The version is read before the rows, so a cached row is never older than the version it is filed
 * under; a change in between only makes the next request read again.
 */
export function withCatalogCache(repo: Repository): Repository {
  let version: number | undefined;
  const apps = new Map<string, Promise<AppRecord | undefined>>();
  const keys = new Map<string, Promise<SigningKeyRecord[]>>();

  async function current() {
    const now = await repo.catalogVersion();
    if (now !== version) {
      apps.clear();
      keys.clear();
      version = now;
    }
  }

  // Only what exists is kept: requests for made-up app ids must not grow the cache.
  function cached<T>(map: Map<string, Promise<T>>, id: string, read: () => Promise<T>, exists: (value: T) => boolean): Promise<T> {
    let value = map.get(id);
    if (!value) {
      value = read();
      map.set(id, value);
      value.then(
        (v) => exists(v) || map.delete(id),
        () => map.delete(id),
      );
    }
    return value;
  }

  return {
    ...repo,
    async findApp(appId) {
      await current();
      return cached(apps, appId, () => repo.findApp(appId), (app) => app !== undefined);
    },
    async listKeys(appId) {
      await current();
      return cached(keys, appId, () => repo.listKeys(appId), (list) => list.length > 0);
    },
  };
}
