import type { Logger } from './log.js';

/**
 * better-sqlite3 12, the last to support Node 20, can abort the process on Node 24 and later: its
 * destructors may run after Node has torn its environment down (`Assertion failed: (env) != nullptr`;
 * fixed in better-sqlite3 13, which needs Node 22). `engines` says so only to npm, at install.
 */
export function warnIfUnsupportedNode(logger: Logger, version = process.versions.node): void {
  if (Number(version.split('.')[0]) < 24) return;
  logger.warn({ node: version }, `Node ${version} is not supported: with it, better-sqlite3 12 can abort the process (Assertion failed: (env) != nullptr). Run Node 22 (README: What is not done yet)`);
}
