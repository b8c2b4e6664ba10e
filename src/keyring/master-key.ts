import { createCipheriv, createDecipheriv, hash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../config.js';
import { syncToDisk } from '../files.js';

export interface MasterKey {
  /** Names the key inside every envelope, so a later master key can sit beside this one. */
  readonly id: string;
  readonly key: Buffer;
  /** Where it came from, for messages: TOKENMINT_MASTER_KEY or the key file's path. */
  readonly source: string;
}

const KEY_BYTES = 32;
const ENVELOPE_VERSION = 'tm1';

export function masterKeyFromBytes(key: Buffer, source = 'TOKENMINT_MASTER_KEY'): MasterKey {
  if (key.length !== KEY_BYTES) throw new ConfigError(`the master key must be ${KEY_BYTES} bytes (base64 of 32 random bytes), got ${key.length}`);
  return { id: hash('sha256', key, 'hex').slice(0, 16), key, source };
}

/**
 * TOKENMINT_MASTER_KEY if set; otherwise the key file, created on first use with 32 random bytes and
 * mode 0600 (folder 0700).
 */
export function loadMasterKey(options: { base64: string | undefined; file: string }): MasterKey {
  if (options.base64 !== undefined) return masterKeyFromBytes(Buffer.from(options.base64, 'base64'));
  fs.mkdirSync(path.dirname(options.file), { recursive: true, mode: 0o700 });
  if (!fs.existsSync(options.file)) createKeyFile(options.file);
  return masterKeyFromBytes(Buffer.from(fs.readFileSync(options.file, 'utf8').trim(), 'base64'), options.file);
}

/**
 * Writes a new key whole, and to disk, under a name of this process's own, then links it into place.
 * link() fails when the name exists, so processes starting at once agree on one key, and none of
 * them can read the file before its key is in it (which creating the file itself with O_EXCL, then
 * writing to it, allowed: a process starting a moment later read it empty).
 */
function createKeyFile(file: string): void {
  const temporary = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
  fs.writeFileSync(temporary, randomBytes(KEY_BYTES).toString('base64') + '\n', { flag: 'wx', mode: 0o600 });
  syncToDisk(temporary);
  try {
    fs.linkSync(temporary, file);
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
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', master.key, iv);
  cipher.setAAD(Buffer.from(aad));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return [ENVELOPE_VERSION, master.id, iv.toString('base64url'), ciphertext.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
}

/** The id of the master key an envelope was sealed under. */
export const sealedUnder = (envelope: string): string | undefined => envelope.split('.')[1];

export function unseal(master: MasterKey, envelope: string, aad: string): string {
  const [version, keyId, iv, ciphertext, tag] = envelope.split('.');
  if (version !== ENVELOPE_VERSION || !iv || !ciphertext || !tag) throw new Error('not a tokenmint sealed envelope');
  if (keyId !== master.id) throw new Error(`sealed under master key ${keyId}, but master key ${master.id} is loaded`);
  const decipher = createDecipheriv('aes-256-gcm', master.key, Buffer.from(iv, 'base64url'));
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
}
