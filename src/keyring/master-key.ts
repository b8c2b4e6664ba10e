import { createCipheriv, createDecipheriv, hash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../config.js';
import { accessHint, errorCode, fullDiskHint, isAccessDenied, makePrivateFolder, syncToDisk } from '../files.js';

export interface MasterKey {
  /** Names the key inside every envelope, so a later master key can sit beside this one. */
  readonly id: string;
  readonly key: Buffer;
  /** Where it came from, for messages: TOKENMINT_MASTER_KEY or the key file's path. */
  readonly source: string;
}

const KEY_BYTES = 32;
const ENVELOPE_VERSION = 'tm1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

function masterKeyFromBytes(key: Buffer, source = 'TOKENMINT_MASTER_KEY'): MasterKey {
  if (key.length !== KEY_BYTES) throw new ConfigError(`the master key must be ${KEY_BYTES} bytes (base64 of 32 random bytes), got ${key.length} (${source})`);
  return { id: hash('sha256', key, 'hex').slice(0, 16), key, source };
}

/**
 * The loaded master keys, never empty: the first seals new keys, and each opens what was sealed under
 * it (an envelope names its master key), so a new master key can take over while the old one still
 * opens the keys sealed before (`tokenmint master-key rotate`, then `reseal`).
 */
export type MasterKeys = readonly [MasterKey, ...MasterKey[]];

const randomKeyText = () => randomBytes(KEY_BYTES).toString('base64');

function parseKeys(texts: string[], source: string): MasterKeys {
  const keys = texts.map((text) => masterKeyFromBytes(Buffer.from(text, 'base64'), source));
  if (keys.length === 0) throw new ConfigError(`${source} holds no master key`);
  if (new Set(keys.map((k) => k.id)).size !== keys.length) throw new ConfigError(`${source} lists the same master key twice`);
  return keys as [MasterKey, ...MasterKey[]];
}

const keysOfFile = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);

export interface MasterKeySource {
  /** TOKENMINT_MASTER_KEY, or undefined to use the key file. */
  base64: string | undefined;
  file: string;
}

/**
 * TOKENMINT_MASTER_KEY if set (keys separated by commas); otherwise the key file (one key a line),
 * created when `create` (32 random bytes, mode 0600, folder 0700) or else read only if it exists:
 * [] when there is none. The first key seals.
 */
function loadMasterKeys(options: MasterKeySource, { create }: { create: boolean }): MasterKey[] {
  if (options.base64 !== undefined) return [...parseKeys(options.base64.split(',').map((k) => k.trim()), 'TOKENMINT_MASTER_KEY')];
  const { file } = options;
  try {
    if (!keyFileExists(file)) {
      if (!create) return [];
      makePrivateFolder(path.dirname(file));
      writeKeyFile(file, [randomKeyText()], { replace: false });
    }
    refuseSharedKeyFile(file);
    return [...parseKeys(keysOfFile(file), file)];
  } catch (error) {
    const why = `cannot read or create the master key file ${file}: ${(error as Error).message}`;
    if (isAccessDenied(error)) throw new ConfigError(`${why}; ${accessHint(file)}`);
    // A container's read-only root, or a full disk: the operator's to fix, not a stack trace.
    const code = errorCode(error);
    if (code === 'EROFS') throw new ConfigError(`${why}; set TOKENMINT_MASTER_KEY instead, or run from a folder where keys/ can be written`);
    if (code === 'ENOSPC') throw new ConfigError(`${why}; ${fullDiskHint(file, error) ?? 'make room on its disk'}`);
    throw error;
  }
}

/** Why a process has no master key, and what to do: most often an admin's shell without the server's environment. */
const noMasterKey = (file: string) =>
  `no master key is loaded: TOKENMINT_MASTER_KEY is not set, and there is no key file at ${file}; run with the server's TOKENMINT_MASTER_KEY, or in the folder the server runs in`;

/**
 * Whether the key file exists; a file this user may not look at throws, rather than count as missing
 * and get a new key, and so does anything there but a file.
 */
function keyFileExists(file: string): boolean {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  if (!stat.isFile()) {
    throw new ConfigError(
      `${file} is ${stat.isDirectory() ? 'a folder' : 'not a file'}, not a key file (a Docker bind mount of a file missing on the host makes a folder there): remove it, or mount the key file itself, or set TOKENMINT_MASTER_KEY`,
    );
  }
  return true;
}

/**
 * Refuses a key file other users may read or write, as sshd and PostgreSQL refuse such a private
 * key: one `cp` or restore that left it 0644 would otherwise pass unnoticed. tokenmint writes it 0600.
 */
function refuseSharedKeyFile(file: string): void {
  const mode = fs.statSync(file).mode & 0o777;
  if (mode & 0o077) {
    throw new ConfigError(
      `${file} is open to other users (mode ${mode.toString(8).padStart(4, '0')}); it opens every private key: make it this user's alone with \`chmod 600 ${file}\``,
    );
  }
}

/**
 * This process's master keys. The first seals new keys; each opens what was sealed under it. With
 * the key file, the file is read again before sealing and when an envelope names a key not loaded,
 * so a running server follows `master-key rotate` with no restart: it opens what the CLI seals under
 * the new key, and seals under it too. (TOKENMINT_MASTER_KEY is read once: change it, then restart.)
 */
export interface MasterKeyRing {
  /**
   * The key that seals now. With none loaded, `createFile` makes the key file (the first key of a new
   * install); without it, a ConfigError.
   */
  sealing(options?: { createFile?: boolean }): MasterKey;
  /** The key of that id, or undefined when it is not loaded even after reading the file again. */
  find(id: string): MasterKey | undefined;
  /** The keys loaded; none only while there is no key file and it was not to be made yet. */
  loaded(): readonly MasterKey[];
  /** For messages: "master key a1b2… was loaded (from …)", or why none is and what to do. */
  describeLoaded(): string;
}

/**
 * `createFile: 'at-open'` (the server) makes a missing key file at once, so a start that cannot make it
 * fails there. `'when-sealing'` (the CLI) makes it only when a new key is sealed: a command run where
 * the server gets TOKENMINT_MASTER_KEY from its environment, by an admin whose shell has not got it,
 * would otherwise leave a stray random key file there.
 */
export function openMasterKeyRing(options: MasterKeySource & { createFile?: 'at-open' | 'when-sealing' }): MasterKeyRing {
  let keys = loadMasterKeys(options, { create: options.createFile !== 'when-sealing' });
  // The file's keys first, then those loaded before that it no longer lists (a key taken out of the
  // file leaves a running process at its restart). A file gone or half-edited changes nothing.
  const reread = (): readonly MasterKey[] => {
    if (options.base64 !== undefined) return keys;
    try {
      const fromFile = parseKeys(keysOfFile(options.file), options.file);
      keys = [...fromFile, ...keys.filter((k) => !fromFile.some((f) => f.id === k.id))];
    } catch {
      // keep what is loaded
    }
    return keys;
  };
  return {
    sealing: ({ createFile = false } = {}) => {
      const [first] = reread();
      if (first) return first;
      if (!createFile) throw new ConfigError(noMasterKey(options.file));
      keys = loadMasterKeys(options, { create: true });
      return keys[0]!;
    },
    find: (id) => keys.find((k) => k.id === id) ?? reread().find((k) => k.id === id),
    loaded: () => keys,
    describeLoaded: () => (keys.length ? `${describeKeys(keys)} ${keys.length === 1 ? 'was' : 'were'} loaded (from ${keys[0]!.source})` : noMasterKey(options.file)),
  };
}

/**
 * Puts a new random master key first in the key file, keeping the others after it to open what they
 * sealed. Returns the keys now in the file. (With TOKENMINT_MASTER_KEY the environment is the
 * operator's to change.)
 */
export function addMasterKey(options: MasterKeySource): MasterKeys {
  if (options.base64 !== undefined) {
    throw new ConfigError(
      'TOKENMINT_MASTER_KEY is set, so the master keys are yours to change: put a new key (base64 of 32 random bytes) first in it, ' +
        'a comma before the old one, restart the server, then run `tokenmint master-key reseal`',
    );
  }
  // The file as it is must load. None at all is refused too: a new file's first key would open nothing.
  if (loadMasterKeys(options, { create: false }).length === 0) throw new ConfigError(noMasterKey(options.file));
  writeKeyFile(options.file, [randomKeyText(), ...keysOfFile(options.file)], { replace: true });
  return parseKeys(keysOfFile(options.file), options.file);
}

/** For messages: "master key a1b2…" or "master keys a1b2…, c3d4…". */
const describeKeys = (masters: readonly MasterKey[]) => `master key${masters.length === 1 ? '' : 's'} ${masters.map((m) => m.id).join(', ')}`;

/**
 * Writes the key file whole, and to disk, under a name of this process's own, then puts it in place.
 * A new file is linked (link() fails when the name exists, so processes starting at once agree on one
 * key, and none of them reads the file before its key is in it); a replaced one is renamed over the old,
 * so a reader sees the old file or the new one, never a part.
 */
function writeKeyFile(file: string, keys: string[], { replace }: { replace: boolean }): void {
  const temporary = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
  fs.writeFileSync(temporary, keys.join('\n') + '\n', { flag: 'wx', mode: 0o600 });
  syncToDisk(temporary);
  try {
    if (replace) fs.renameSync(temporary, file);
    else fs.linkSync(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    fs.rmSync(temporary, { force: true });
  }
  syncToDisk(path.dirname(file)); // the new name is durable once its folder is
}

/**
 * AES-256-GCM envelope `tm1.<master key id>.<iv>.<ciphertext>.<tag>` (base64url parts). `aad` binds the
 * ciphertext to its row (app and kid), so a sealed key copied onto another row does not open.
 */
export function seal(master: MasterKey, plaintext: string, aad: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', master.key, iv);
  cipher.setAAD(Buffer.from(aad));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return [ENVELOPE_VERSION, master.id, iv.toString('base64url'), ciphertext.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
}

/** The id of the master key an envelope was sealed under. */
export const sealedUnder = (envelope: string): string | undefined => envelope.split('.')[1];

/**
 * Opens an envelope with the master key it names, if the ring has it. The tag must be GCM's full 16
 * bytes and the IV the 12 that `seal` makes: Node's GCM takes a tag cut to as few as 4 bytes, which
 * checks only those, and a forgery then needs 2^32 tries rather than 2^128 (NIST SP 800-38D §5.2.1.2).
 */
export function unseal(masters: MasterKeyRing, envelope: string, aad: string): string {
  const [version, keyId, iv, ciphertext, tag] = envelope.split('.');
  if (version !== ENVELOPE_VERSION || !keyId || !iv || !ciphertext || !tag) throw new Error('not a tokenmint sealed envelope');
  const ivBytes = Buffer.from(iv, 'base64url');
  const tagBytes = Buffer.from(tag, 'base64url');
  if (ivBytes.length !== IV_BYTES || tagBytes.length !== TAG_BYTES) throw new Error('not a tokenmint sealed envelope: its IV or tag is not of AES-GCM\'s full length');
  const master = masters.find(keyId);
  if (!master) throw new Error(`sealed under master key ${keyId}, but ${masters.describeLoaded()}`);
  const decipher = createDecipheriv('aes-256-gcm', master.key, ivBytes, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(tagBytes);
  return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
}
