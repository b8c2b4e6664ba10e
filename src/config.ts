import path from 'node:path';
import { z } from 'zod';
import { usableCpus } from './cpus.js';
import { whole, wholeNumberFrom } from './whole-number.js';

const port = wholeNumberFrom(whole('', 65535).min(0));
/** A positive whole number, digits only, at most `max` if given. */
const positiveInt = (max?: number, message?: string) => wholeNumberFrom(whole('', max, message).positive('must be at least 1'));

/**
 * Every worker is ~100 MB and one more writer of the one SQLite file, whose commits empty the other
 * workers' page caches (README, Performance): past a few, more workers cost more than they bring.
 * Measured on 2 cores only; WORKERS overrides it.
 */
const DEFAULT_MAX_WORKERS = 8;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Text that must be given if set: `HOST=` is a variable set by mistake, not a request for the default. */
const nonEmpty = () => z.string().min(1, 'is set but empty: give a value, or unset it');

// The only reader of process.env. Every default is here, with its unit in the name.
const envSchema = z.object({
  HOST: nonEmpty().default('127.0.0.1'),
  PORT: port.default(8080),
  DATABASE_URL: nonEmpty().default('data/tokenmint.db'),
  TOKENMINT_MASTER_KEY: z.string().optional(),
  LOG_LEVEL: z.enum(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(', ')}`).default('info'),
  // Header set by a reverse proxy you trust (e.g. x-forwarded-for); unset = the socket address.
  TRUST_PROXY_HEADER: nonEmpty().optional(),
  APP_KEY_FAILURE_LIMIT: positiveInt().default(20),
  // A day at most: the block lasts this long, for whoever shares the address (or the IPv6 network counted) too.
  APP_KEY_FAILURE_WINDOW_SECONDS: positiveInt(86_400, 'must be at most 86400 seconds (a day)').default(300),
  APP_KEY_LIMITER_MAX_CLIENTS: positiveInt().default(10_000),
  // 128: each address counts apart, as the contract's 429 says. 64 (or 56, 48) counts a network: a
  // client may send from any address of its /64, but so may others who share it with the sender.
  APP_KEY_FAILURE_IPV6_PREFIX: positiveInt(128, 'must be a prefix length of at most 128 bits').default(128),
  // A day at most: a revoked key stays trusted this long by a verifier that cached the JWKS, and every
  // scheduled rotation waits at least this long after its key was published.
  JWKS_MAX_AGE_SECONDS: positiveInt(86_400, 'must be at most 86400 seconds (a day)').default(300),
  // This and MAINTENANCE_INTERVAL_SECONDS drive Node timers, which take at most 2^31 - 1 ms (24.8
  // days) and run one given more after 1 ms instead: until these bounds, a SIGTERM exited 1 at once,
  // and maintenance ran every millisecond (two-thirds of a core, idle).
  SHUTDOWN_TIMEOUT_SECONDS: positiveInt(3600, 'must be at most 3600 seconds').default(10),
  // A request's headers and body must all arrive within this (else 408): a client trickling bytes
  // cannot hold a connection for Node's default of five minutes.
  REQUEST_TIMEOUT_SECONDS: positiveInt(3600).default(30),
  // How long an idle keep-alive connection stays open. Behind a load balancer that reuses
  // connections, make it longer than the balancer's idle timeout, or it may send on a closing one (502).
  KEEP_ALIVE_TIMEOUT_SECONDS: positiveInt(3600).default(5),
  // Digits, with a fraction if wanted (tests run it every 0.2 s), but not under a tenth of a second:
  // 0.001 would run it every millisecond. Number() would also take '0x10', '1e3' and ' 5'.
  MAINTENANCE_INTERVAL_SECONDS: z
    .preprocess(
      (v) => (typeof v === 'string' && /^\d+(?:\.\d+)?$/.test(v) ? Number(v) : NaN),
      z
        .number({ error: (issue) => (issue.code === 'invalid_type' ? 'must be a number of seconds, such as 60 or 0.5' : undefined) })
        .min(0.1, 'must be at least 0.1 seconds')
        .max(86_400, 'must be at most 86400 seconds (a day)'),
    )
    .default(60),
  // When set, GET /metrics wants `Authorization: Bearer <METRICS_TOKEN>`.
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters: a random secret, such as the output of `openssl rand -hex 32`').optional(),
  // Server processes sharing the port and the database (node:cluster): by default one per CPU this
  // process may use (a container's CPU limit counts), at most DEFAULT_MAX_WORKERS.
  WORKERS: positiveInt(64).default(Math.min(usableCpus(), DEFAULT_MAX_WORKERS)),
  // A worker that has not shown a turning event loop for this long is killed and restarted.
  WORKER_STALL_TIMEOUT_SECONDS: positiveInt(3600).default(30),
  // HTTPS: PEM files of the certificate (its chain after it) and its private key, both or neither.
  // Read again when they change (a renewal), with no restart.
  TLS_CERT_FILE: nonEmpty().optional(),
  TLS_KEY_FILE: nonEmpty().optional(),
  // Set by the cluster primary: "0" in every worker but the one that runs maintenance.
  TOKENMINT_MAINTENANCE: z.enum(['0', '1']).default('1'),
});

export interface Config {
  readonly host: string;
  readonly port: number;
  /** Absolute path of the SQLite file. */
  readonly databasePath: string;
  /** Base64 of 32 bytes, or undefined to use (and create) masterKeyPath. */
  readonly masterKeyBase64: string | undefined;
  readonly masterKeyPath: string;
  readonly logLevel: string;
  readonly trustProxyHeader: string | undefined;
  readonly appKeyFailureLimit: number;
  readonly appKeyFailureWindowSeconds: number;
  readonly appKeyLimiterMaxClients: number;
  /** The prefix length an IPv6 client is counted by: 128, each address apart. */
  readonly appKeyFailureIpv6Prefix: number;
  readonly jwksMaxAgeSeconds: number;
  readonly shutdownTimeoutSeconds: number;
  readonly requestTimeoutSeconds: number;
  readonly keepAliveTimeoutSeconds: number;
  /** How often the server runs due key rotations and pruning. */
  readonly maintenanceIntervalSeconds: number;
  readonly metricsToken: string | undefined;
  readonly workers: number;
  readonly workerStallTimeoutSeconds: number;
  /** Whether this process runs scheduled rotations and pruning (one worker of a cluster does). */
  readonly runsMaintenance: boolean;
  /** Absolute paths of the PEM certificate and key to serve HTTPS with; undefined: plain HTTP. */
  readonly tls: { readonly certFile: string; readonly keyFile: string } | undefined;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * DATABASE_URL as the absolute path of a file: a path, or a `file:` URI as SQLite reads one
 * (`file:data.db`, `file:/srv/data.db`, `file:///srv/data.db`, `file://localhost/srv/data.db`;
 * %-escapes decoded), `sqlite:` taken for `file:`. Refused with what to write instead, where each
 * used to name a file no one meant: an in-memory database (`:memory:` became a file of that name),
 * URI parameters (`?mode=ro` became part of the name), a host (`sqlite://data.db` became /data.db)
 * and a folder (`data/` became a file named data).
 */
function databaseFile(url: string, cwd: string): string {
  const refuse = (why: string) => new ConfigError(`invalid environment:\n  DATABASE_URL: ${why}`);
  let file = url;
  const scheme = /^(?:file|sqlite):/i.exec(url);
  if (scheme) {
    const rest = url.slice(scheme[0].length);
    if (/[?#]/.test(rest)) throw refuse(`${url} has URI parameters, which tokenmint does not take (it opens the file itself): give the file alone`);
    const host = /^\/\/([^/]*)/.exec(rest);
    if (host && host[1] !== '' && host[1]!.toLowerCase() !== 'localhost') {
      throw refuse(`${url} names the host "${host[1]}": for a file in the working folder write file:${host[1]}${rest.slice(host[0].length)} (or the path alone), for an absolute one file:///…`);
    }
    try {
      file = decodeURIComponent(host ? rest.slice(host[0].length) : rest);
    } catch {
      throw refuse(`${url} has a % that does not start an escape such as %20`);
    }
  }
  if (file === '' || file === ':memory:') throw refuse('must name a file: the server, its workers and the CLI share it, and an in-memory database would be another, empty one in each');
  // path.resolve drops a trailing slash: "data/" would become a file named data.
  if (/[/\\]$/.test(file)) throw refuse(`${url} names a folder: name the database file in it, such as ${url}tokenmint.db`);
  return path.resolve(cwd, file);
}

/** Parses the environment once; relative paths resolve against `cwd`. Throws listing every bad field. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid environment:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if ((e.TLS_CERT_FILE === undefined) !== (e.TLS_KEY_FILE === undefined)) {
    throw new ConfigError(`invalid environment:\n  ${e.TLS_CERT_FILE === undefined ? 'TLS_CERT_FILE' : 'TLS_KEY_FILE'}: required with ${e.TLS_CERT_FILE === undefined ? 'TLS_KEY_FILE' : 'TLS_CERT_FILE'} (HTTPS needs both, plain HTTP neither)`);
  }
  return Object.freeze({
    host: e.HOST,
    port: e.PORT,
    databasePath: databaseFile(e.DATABASE_URL, cwd),
    masterKeyBase64: e.TOKENMINT_MASTER_KEY,
    masterKeyPath: path.resolve(cwd, 'keys/master.key'),
    logLevel: e.LOG_LEVEL,
    trustProxyHeader: e.TRUST_PROXY_HEADER?.toLowerCase(),
    appKeyFailureLimit: e.APP_KEY_FAILURE_LIMIT,
    appKeyFailureWindowSeconds: e.APP_KEY_FAILURE_WINDOW_SECONDS,
    appKeyLimiterMaxClients: e.APP_KEY_LIMITER_MAX_CLIENTS,
    appKeyFailureIpv6Prefix: e.APP_KEY_FAILURE_IPV6_PREFIX,
    jwksMaxAgeSeconds: e.JWKS_MAX_AGE_SECONDS,
    shutdownTimeoutSeconds: e.SHUTDOWN_TIMEOUT_SECONDS,
    requestTimeoutSeconds: e.REQUEST_TIMEOUT_SECONDS,
    keepAliveTimeoutSeconds: e.KEEP_ALIVE_TIMEOUT_SECONDS,
    maintenanceIntervalSeconds: e.MAINTENANCE_INTERVAL_SECONDS,
    metricsToken: e.METRICS_TOKEN,
    workers: e.WORKERS,
    workerStallTimeoutSeconds: e.WORKER_STALL_TIMEOUT_SECONDS,
    runsMaintenance: e.TOKENMINT_MAINTENANCE === '1',
    tls: e.TLS_CERT_FILE && e.TLS_KEY_FILE ? Object.freeze({ certFile: path.resolve(cwd, e.TLS_CERT_FILE), keyFile: path.resolve(cwd, e.TLS_KEY_FILE) }) : undefined,
  });
}
