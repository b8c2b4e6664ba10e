import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { exportPKCS8, exportSPKI, generateKeyPair } from 'jose';
import { newUlid } from '../ids.js';
import type { AuditLog } from '../audit.js';
import type { Clock } from '../clock.js';
import { notFound } from '../errors.js';
import type { AppRecord, AppSettings, JwksCaching, KeyState, Repository, SigningKeyRecord } from '../storage/repository.js';
import { ALG, encodedHeader } from '../tokens/jwt.js';
import { ConfigError } from '../config.js';
import { cachingAfterStart, knownToVerifiersAt, publishedKnownBy } from './jwks-caching.js';
import { seal, sealedUnder, unseal, type MasterKey, type MasterKeyRing } from './master-key.js';

export type Keyring = ReturnType<typeof createKeyring>;

/** The key that signs an app's tokens now. */
export interface Signer {
  kid: string;
  privateKey: KeyObject;
  /** The JWS protected header of its tokens, base64url-encoded. */
  encodedHeader: string;
  /** Base64 of the SPKI PEM text, as a token pair's `public_key`. */
  publicKeyBase64: string;
}

export interface PublicJwk {
  kty: string;
  crv: string;
  x: string;
  y: string;
  kid: string;
  alg: typeof ALG;
  use: 'sig';
}

/** Binds a sealed private key to its row. */
const sealAad = (appId: string, kid: string) => `tokenmint:signing-key:${appId}:${kid}`;

/**
 * How long a token signed under these settings can live: the longer of an auth token and a refresh
 * token. (Not capped by session-ttl: a session started under a longer one keeps its end.)
 */
export function tokenLifetimeMs(settings: AppSettings): number {
  return Math.max(settings.accessTtlSeconds, settings.refreshTtlSeconds) * 1000;
}

/**
 * When a key stops verifying and leaves the JWKS; null while it has no end (next, current). A retired
 * key lasts until every token it signed has expired: a token lifetime after it retired, or longer if
 * the app's lifetimes were shortened since it signed (`verifiesAtLeastUntil`).
 */
export function keyVerifiesUntil(app: AppRecord, key: SigningKeyRecord): number | null {
  if (key.state === 'revoked') return key.revokedAt;
  if (key.state === 'retired') return Math.max((key.retiredAt ?? 0) + tokenLifetimeMs(app), key.verifiesAtLeastUntil ?? 0);
  return null;
}

/** Published in the JWKS and accepted for verification: next, current, and retired until it ends; never once pruned. */
export function isPublished(app: AppRecord, key: SigningKeyRecord, now: number): boolean {
  if (key.state === 'revoked' || key.prunedAt !== null) return false;
  const until = keyVerifiesUntil(app, key);
  return until === null || until > now;
}

/**
 * When a scheduled rotation of `app` is due, or null for never (rotate-every 0): rotate-every after the
 * current key took over, but never before the next key is in every JWKS a verifier may hold (one JWKS
 * cache lifetime after it was published, or longer after a lowered max-age), so none meets an unknown kid.
 */
export function scheduledRotationAt(app: AppRecord, keys: SigningKeyRecord[], caching: JwksCaching): number | null {
  const current = keys.find((k) => k.state === 'current');
  const next = keys.find((k) => k.state === 'next');
  if (app.rotateEverySeconds === 0 || !current || !next) return null;
  return Math.max((current.activatedAt ?? current.createdAt) + app.rotateEverySeconds * 1000, knownToVerifiersAt(caching, next.createdAt));
}

export interface KeyringOptions {
  repo: Repository;
  masterKeys: MasterKeyRing;
  clock: Clock;
  /** How long a next key is published before a scheduled rotation may promote it: the JWKS max-age. */
  publicationLeadSeconds: number;
  /**
   * The CLI: take the JWKS max-age the last server start recorded instead, when there is one. An admin's
   * shell may not have the server's JWKS_MAX_AGE_SECONDS, and the server's is the one verifiers cache by.
   * (A former, longer max-age is always the recorded one's: see jwks-caching.ts.)
   */
  followServerPublicationLead?: boolean;
  audit: AuditLog;
}

export function createKeyring({ repo, masterKeys, clock, publicationLeadSeconds, followServerPublicationLead = false, audit }: KeyringOptions) {
  async function jwksCaching(): Promise<JwksCaching> {
    const recorded = await repo.serverJwksCaching();
    return { maxAgeSeconds: (followServerPublicationLead ? recorded?.maxAgeSeconds : undefined) ?? publicationLeadSeconds, former: recorded?.former ?? null };
  }

  // Key material never changes for a kid, so imported keys are kept for the life of the process (or
  // until pruned); the state (current, revoked, ...) comes from the repository on every use.
  const signers = new Map<string, Signer>();
  const publicKeys = new Map<string, KeyObject>();

  const signerOf = (key: SigningKeyRecord): Signer => {
    let signer = signers.get(key.kid);
    if (!signer) {
      if (key.sealedPrivateKey === null) throw new Error(`key ${key.kid} was pruned`);
      signer = {
        kid: key.kid,
        privateKey: createPrivateKey(unseal(masterKeys, key.sealedPrivateKey, sealAad(key.appId, key.kid))),
        encodedHeader: encodedHeader(key.kid),
        publicKeyBase64: Buffer.from(key.publicKeyPem).toString('base64'),
      };
      signers.set(key.kid, signer);
    }
    return signer;
  };

  const publicKeyOf = (key: SigningKeyRecord): KeyObject => {
    let publicKey = publicKeys.get(key.kid);
    if (!publicKey) {
      publicKey = createPublicKey(key.publicKeyPem);
      publicKeys.set(key.kid, publicKey);
    }
    return publicKey;
  };

  /**
   * Throws a ConfigError unless a loaded master key is the one the current and next keys of `appId`
   * (or of every app) are sealed under — the keys whose private half will sign. With another master
   * key every issue and renew would fail, and keys sealed now would not open under the right one.
   * Retired and revoked keys only verify (with their public half), so they do not count: after a
   * lost master key, `key revoke` (never checked) replaces the keys that sign. Resolves to whether
   * there was such a key to check.
   */
  async function checkMasterKey(appId?: string): Promise<boolean> {
    let checked = false;
    for (const app of appId === undefined ? await repo.listApps() : [{ appId }]) {
      for (const key of await repo.listKeys(app.appId)) {
        const id = key.sealedPrivateKey !== null && (key.state === 'current' || key.state === 'next') ? sealedUnder(key.sealedPrivateKey) : undefined;
        if (id === undefined) continue;
        checked = true;
        if (masterKeys.find(id)) continue;
        const advice = masterKeys.loaded().length ? '; start with the master key they were sealed under (README: Backups)' : '';
        throw new ConfigError(`the signing keys of app "${app.appId}" are sealed under master key ${id}, but ${masterKeys.describeLoaded()}${advice}`);
      }
    }
    return checked;
  }

  /**
   * The master key for the keys of a first app (no other app's signing keys to check it against): one
   * the server last started with, if a server has started, or a key file made now for a new install.
   * A first app made from a shell that lacks the server's TOKENMINT_MASTER_KEY was otherwise sealed
   * under a stray new key file, which the server cannot open: every issue of it answered 500.
   */
  async function sealingForFirstApp(): Promise<MasterKey> {
    const serverKeys = await repo.serverMasterKeys();
    if (serverKeys.length === 0) return masterKeys.sealing({ createFile: true });
    if (!serverKeys.some((id) => masterKeys.find(id))) {
      const advice = masterKeys.loaded().length ? "; run with the server's TOKENMINT_MASTER_KEY, or in the folder the server runs in" : '';
      throw new ConfigError(`the server last started with master key${serverKeys.length === 1 ? '' : 's'} ${serverKeys.join(', ')}, but ${masterKeys.describeLoaded()}${advice}`);
    }
    return masterKeys.sealing();
  }

  /**
   * A new key pair, its private half sealed under `master`. Only a new app's keys may make the master
   * key file (a new install); any other key needs a master key loaded, or it would be sealed under a
   * stray new one that the server's TOKENMINT_MASTER_KEY does not open.
   */
  async function newKey(appId: string, state: KeyState, now: number, master = masterKeys.sealing()): Promise<SigningKeyRecord> {
    const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true });
    const kid = newUlid(now);
    return {
      kid,
      appId,
      state,
      sealedPrivateKey: seal(master, await exportPKCS8(privateKey), sealAad(appId, kid)),
      publicKeyPem: await exportSPKI(publicKey),
      createdAt: now,
      activatedAt: state === 'current' ? now : null,
      retiredAt: null,
      revokedAt: null,
      verifiesAtLeastUntil: null,
      prunedAt: null,
    };
  }

  /** The scheduled rotation of one app, if due now. Safe to run from several processes at once. */
  async function rotateIfDue(app: AppRecord, now: number, caching: JwksCaching): Promise<SigningKeyRecord | undefined> {
    const dueAt = scheduledRotationAt(app, await repo.listKeys(app.appId), caching);
    if (dueAt === null || dueAt > now) return undefined;
    await checkMasterKey(app.appId);
    const current = await repo.rotateKeys(app.appId, await newKey(app.appId, 'next', now), now, {
      currentActivatedAtOrBefore: now - app.rotateEverySeconds * 1000,
      nextCreatedAtOrBefore: publishedKnownBy(caching, now),
    });
    if (current) await audit.record('key.rotated', { appId: app.appId, kid: current.kid, detail: { scheduled: true } });
    return current;
  }

  /** Destroys the private keys that can no longer verify anything: revoked, or retired past their lifetime. */
  async function pruneExpired(app: AppRecord, now: number): Promise<number> {
    const expired = (await repo.listKeys(app.appId)).filter((k) => k.prunedAt === null && (k.state === 'revoked' || (k.state === 'retired' && !isPublished(app, k, now))));
    for (const k of expired) {
      signers.delete(k.kid);
      publicKeys.delete(k.kid);
    }
    const pruned = await repo.pruneKeys(app.appId, expired.map((k) => k.kid), now);
    for (const kid of pruned) await audit.record('key.pruned', { appId: app.appId, kid });
    return pruned.length;
  }

  return {
    checkMasterKey,

    /**
     * At a server's start, once checkMasterKey has passed: records the ids of the master keys it runs
     * with (see sealingForFirstApp) and its JWKS caching (see followServerPublicationLead). Resolves to
     * that caching: `former` says a lowered max-age.
     */
    async recordServerStart(): Promise<JwksCaching> {
      const now = clock();
      const jwksCaching = (recorded: JwksCaching | null) => cachingAfterStart(recorded, publicationLeadSeconds, now);
      return repo.recordServerStart({ masterKeyIds: masterKeys.loaded().map((k) => k.id), jwksCaching }, now);
    },

    /** How long verifiers may hold the JWKS: how long a next key is published before a scheduled rotation promotes it. */
    jwksCaching,

    /** The first keys of a new app: one current, one next already published, under the master key the other apps use. */
    async newKeys(appId: string, now: number): Promise<SigningKeyRecord[]> {
      const master = (await checkMasterKey()) ? masterKeys.sealing() : await sealingForFirstApp();
      return [await newKey(appId, 'current', now, master), await newKey(appId, 'next', now, master)];
    },

    /**
     * Seals every stored private key of a key that is not revoked (next and current, which sign, and
     * retired ones, kept until pruned) under the first master key, so that the others can be dropped.
     * A key sealed under a master key that is not loaded is left as it is and named in `notLoaded`.
     */
    async reseal(): Promise<{ masterKeyId: string; resealed: number; notLoaded: Array<{ appId: string; kid: string; sealedUnder: string }> }> {
      const sealing = masterKeys.sealing();
      let resealed = 0;
      const notLoaded: Array<{ appId: string; kid: string; sealedUnder: string }> = [];
      for (const app of await repo.listApps()) {
        const changes: Array<{ kid: string; from: string; to: string }> = [];
        for (const key of await repo.listKeys(app.appId)) {
          const from = key.sealedPrivateKey;
          // A revoked key never signs again (and goes at the next pruning).
          if (from === null || key.state === 'revoked') continue;
          const under = sealedUnder(from) ?? '?';
          if (under === sealing.id) continue;
          if (!masterKeys.find(under)) {
            notLoaded.push({ appId: app.appId, kid: key.kid, sealedUnder: under });
            continue;
          }
          const aad = sealAad(app.appId, key.kid);
          changes.push({ kid: key.kid, from, to: seal(sealing, unseal(masterKeys, from, aad), aad) });
        }
        resealed += await repo.resealKeys(app.appId, changes);
      }
      await audit.record('master_key.resealed', { detail: { master_key_id: sealing.id, resealed } });
      return { masterKeyId: sealing.id, resealed, notLoaded };
    },

    /** The keyring; pruned keys (kept only as records) with `includePruned`. */
    async list(appId: string, { includePruned = false } = {}): Promise<SigningKeyRecord[]> {
      return (await repo.listKeys(appId)).filter((k) => includePruned || k.prunedAt === null);
    },

    /**
     * Every scheduled rotation that is due, across apps. Run by the server on a timer and by
     * `tokenmint key rotate --due`; several processes may run it at once.
     */
    async rotateDue(): Promise<Array<{ appId: string; kid: string }>> {
      const rotated: Array<{ appId: string; kid: string }> = [];
      const caching = await jwksCaching();
      for (const app of await repo.listApps()) {
        const current = await rotateIfDue(app, clock(), caching);
        if (current) rotated.push({ appId: app.appId, kid: current.kid });
      }
      return rotated;
    },

    /** Destroys private keys that can no longer verify anything, across apps; resolves to how many. */
    async pruneExpiredKeys(): Promise<number> {
      let pruned = 0;
      for (const app of await repo.listApps()) pruned += await pruneExpired(app, clock());
      return pruned;
    },

    async signer(appId: string): Promise<Signer> {
      const current = (await repo.listKeys(appId)).find((k) => k.state === 'current');
      if (!current) throw new Error(`app ${appId} has no current signing key`);
      return signerOf(current);
    },

    /** The public key for `kid` if it may verify a token of this app now, else why not. */
    async verificationKey(app: AppRecord, kid: string): Promise<KeyObject | { refused: string }> {
      const key = (await repo.listKeys(app.appId)).find((k) => k.kid === kid);
      if (!key) return { refused: 'unknown kid' };
      if (key.state === 'revoked') return { refused: 'revoked kid' };
      if (!isPublished(app, key, clock())) return { refused: 'retired kid past its lifetime' };
      return publicKeyOf(key);
    },

    /** Public JWKs of the published keys, built by copying public fields only. */
    async jwks(app: AppRecord): Promise<{ keys: PublicJwk[] }> {
      const now = clock();
      const keys = (await repo.listKeys(app.appId)).filter((k) => isPublished(app, k, now));
      return {
        keys: keys.map((k) => {
          const { kty, crv, x, y } = createPublicKey(k.publicKeyPem).export({ format: 'jwk' });
          return { kty: kty!, crv: crv!, x: x!, y: y!, kid: k.kid, alg: ALG, use: 'sig' };
        }),
      };
    },

    /** next → current, current → retired, a new next. Resolves to the new current key. */
    async rotate(appId: string): Promise<SigningKeyRecord> {
      await checkMasterKey(appId);
      const now = clock();
      const current = await repo.rotateKeys(appId, await newKey(appId, 'next', now), now);
      if (!current) throw notFound(`no app "${appId}"; see \`tokenmint app list\``);
      await audit.record('key.rotated', { appId, kid: current.kid, detail: { scheduled: false } });
      return current;
    },

    /**
     * Emergency: the key stops verifying and leaves the JWKS; a revoked current key is replaced at once.
     * Never refused for the master key: revoking is also how signing resumes after a lost one.
     */
    async revoke(appId: string, kid: string): Promise<SigningKeyRecord> {
      const now = clock();
      const revoked = await repo.revokeKey(appId, kid, await newKey(appId, 'next', now), now);
      if (!revoked) throw notFound(`app "${appId}" has no key "${kid}"; see \`tokenmint key list ${appId}\``);
      await audit.record('key.revoked', { appId, kid });
      return revoked;
    },
  };
}
