import type { X509Certificate } from 'node:crypto';
import type { Config } from './config.js';
import { warnIfExpiring } from './http/tls.js';
import type { Logger } from './log.js';
import { warnIfNetworkFilesystem } from './storage/sqlite/network-filesystem.js';

/**
 * better-sqlite3 12, the last to support Node 20, can abort the process on Node 24 and later: its
 * destructors may run after Node has torn its environment down (`Assertion failed: (env) != nullptr`;
 * fixed in better-sqlite3 13, which needs Node 22). `engines` says so only to npm, at install.
 */
export function warnIfUnsupportedNode(logger: Logger, version = process.versions.node): void {
  if (Number(version.split('.')[0]) < 24) return;
  logger.warn({ node: version }, `Node ${version} is not supported: with it, better-sqlite3 12 can abort the process (Assertion failed: (env) != nullptr). Run Node 22 (README: What is not done yet)`);
}

/**
 * What a server start warns of, once, from the process that starts it (a cluster's primary, not
 * each worker): a certificate near its end, a database on a network filesystem, an unsupported Node.
 */
export function warnAtStart(config: Config, logger: Logger, certificate: X509Certificate | undefined): void {
  if (certificate) warnIfExpiring(certificate, logger);
  warnIfNetworkFilesystem(config.databasePath, logger);
  warnIfUnsupportedNode(logger);
}
