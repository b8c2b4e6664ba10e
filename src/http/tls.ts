import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import { ConfigError, type Config } from '../config.js';
import { errorCode } from '../files.js';
import type { Logger } from '../log.js';

type TlsFiles = NonNullable<Config['tls']>;

/** A certificate and its private key, as PEM, checked to belong together. */
export interface TlsPair {
  cert: Buffer;
  key: Buffer;
  certificate: X509Certificate;
}

/** How often the files are looked at for a renewal: two `stat`s a second per process. */
const RELOAD_CHECK_MS = 1000;
/** A certificate this close to its end is logged as a warning at start and at each reload. */
const EXPIRY_WARNING_DAYS = 14;

/** One file of the pair; Node's error for a folder (EISDIR) does not name it. */
function readPem(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    if (errorCode(error) === 'EISDIR') throw new Error(`${file} is a folder, not a PEM file`);
    throw error;
  }
}

/** Reads the pair; an Error naming the file and what is wrong with it. */
function readPair({ certFile, keyFile }: TlsFiles): TlsPair {
  const cert = readPem(certFile);
  const key = readPem(keyFile);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    throw new Error(`${certFile} holds no PEM certificate (${(error as Error).message})`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new Error(`${keyFile} holds no PEM private key, or one with a passphrase (${(error as Error).message})`);
  }
  if (!certificate.checkPrivateKey(privateKey)) throw new Error(`the private key in ${keyFile} is not the one of the certificate in ${certFile}`);
  return { cert, key, certificate };
}

/** The pair to start serving HTTPS with; a ConfigError sentence when it cannot serve. */
export function loadTlsPair(files: TlsFiles): TlsPair {
  try {
    return readPair(files);
  } catch (error) {
    throw new ConfigError(`cannot serve HTTPS: ${(error as Error).message}`);
  }
}

/** What a log line says of a certificate: never anything of its key. */
const describeCertificate = (c: X509Certificate) => ({ subject: c.subject.replace(/\n/g, ', '), valid_to: new Date(c.validTo).toISOString(), fingerprint256: c.fingerprint256 });

/** Logs a warning when the certificate has ended or ends within EXPIRY_WARNING_DAYS. */
export function warnIfExpiring(certificate: X509Certificate, logger: Logger, now = Date.now()): void {
  const daysLeft = (new Date(certificate.validTo).getTime() - now) / 86_400_000;
  if (daysLeft < 0) logger.error(describeCertificate(certificate), 'TLS certificate has expired: clients will refuse it');
  else if (daysLeft < EXPIRY_WARNING_DAYS) logger.warn({ ...describeCertificate(certificate), days_left: Math.floor(daysLeft) }, 'TLS certificate expires soon');
}

/**
 * Gives new connections the files' new pair once either file changes (a renewal by certbot,
 * cert-manager or a copy; symlinks are followed), with no restart; open connections keep theirs. A
 * pair that does not load — the certificate replaced and the key not yet — is logged, and the
 * previous one served until the files change again. Returns the function that stops looking.
 */
export function reloadOnChange(server: HttpsServer, files: TlsFiles, logger: Logger): () => void {
  let seen = signature(files);
  const timer = setInterval(() => {
    const now = signature(files); // before reading: a change made while reading is seen next time
    if (now === seen) return;
    seen = now;
    try {
      const pair = readPair(files);
      server.setSecureContext({ cert: pair.cert, key: pair.key });
      logger.info(describeCertificate(pair.certificate), 'TLS certificate reloaded');
      warnIfExpiring(pair.certificate, logger);
    } catch (error) {
      logger.warn({ error: (error as Error).message }, 'TLS certificate not reloaded; still serving the previous one');
    }
  }, RELOAD_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}

const signature = ({ certFile, keyFile }: TlsFiles) =>
  [certFile, keyFile]
    .map((file) => {
      try {
        const s = fs.statSync(file);
        return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch {
        return 'missing';
      }
    })
    .join('|');
