import type { AppRecord, Repository, SigningKeyRecord } from './repository.js';

/**
 * Apps and signing keys are read on every request and change a few times a month. This wraps a
 * repository so that they are read once per catalog version, which moves on any change from any
 * process: a CLI change is seen on the very next request, with no staleness window to reason about.
 *
 * The version is read before the rows, so a cached row is never older than the version it is filed
 * under; a change in between only makes the next request read again. Every app lookup (one per
 * request) reads it; key lookups in the same event-loop turn (the rest of that request) reuse that
 * read, and a change written through this repository makes the next lookup read it again.
 */
export function withCatalogCache(repo: Repository): Repository {
  let version: number | undefined;
  const apps = new Map<string, Promise<AppRecord | undefined>>();
  const keys = new Map<string, Promise<SigningKeyRecord[]>>();

  let checkedThisTurn = false;
  async function current({ recheck }: { recheck: boolean }) {
    if (checkedThisTurn && !recheck) return;
    const now = await repo.catalogVersion();
    if (now !== version) {
      apps.clear();
      keys.clear();
      version = now;
    }
    if (!checkedThisTurn) setImmediate(() => (checkedThisTurn = false)).unref();
    checkedThisTurn = true;
  }

  /** A catalog write of this process: the next lookup reads the version again. */
  const writes =
    <A extends unknown[], R>(write: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await write(...args);
      } finally {
        checkedThisTurn = false;
      }
    };

  /** A write that may be refused because the catalog changed (signingKeyRevoked): the next lookup reads the version again. */
  const recheckOnFailure =
    <A extends unknown[], R>(write: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> =>
      write(...args).catch((error: unknown) => {
        checkedThisTurn = false;
        throw error;
      });

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
    createApp: writes(repo.createApp),
    updateApp: writes(repo.updateApp),
    deleteApp: writes(repo.deleteApp),
    rotateKeys: writes(repo.rotateKeys),
    revokeKey: writes(repo.revokeKey),
    pruneKeys: writes(repo.pruneKeys),
    resealKeys: writes(repo.resealKeys),
    // Refused for a key revoked meanwhile: the caller signs again, with keys read anew.
    createSession: recheckOnFailure(repo.createSession),
    consumeRefreshToken: recheckOnFailure(repo.consumeRefreshToken),
    refuseRevokedKey: recheckOnFailure(repo.refuseRevokedKey),
    async findApp(appId) {
      await current({ recheck: true });
      return cached(apps, appId, () => repo.findApp(appId), (app) => app !== undefined);
    },
    async listKeys(appId) {
      await current({ recheck: false });
      return cached(keys, appId, () => repo.listKeys(appId), (list) => list.length > 0);
    },
  };
}
