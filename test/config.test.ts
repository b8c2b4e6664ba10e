import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('loadConfig', () => {
  it('refuses, naming each, the settings that drive a timer past what Node can hold (it would fire after 1 ms)', () => {
    const refusal = (env: Record<string, string>) => {
      try {
        loadConfig(env, '/srv');
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as Error).message;
      }
      return 'accepted';
    };
    expect(refusal({ SHUTDOWN_TIMEOUT_SECONDS: '99999999', MAINTENANCE_INTERVAL_SECONDS: '99999999' })).toBe(
      'invalid environment:\n  SHUTDOWN_TIMEOUT_SECONDS: must be at most 3600 seconds\n  MAINTENANCE_INTERVAL_SECONDS: must be at most 86400 seconds (a day)',
    );
    expect(refusal({ SHUTDOWN_TIMEOUT_SECONDS: '3600', MAINTENANCE_INTERVAL_SECONDS: '86400' })).toBe('accepted');
  });

  it('takes MAINTENANCE_INTERVAL_SECONDS as digits with an optional fraction, not under a tenth of a second', () => {
    const interval = (value: string) => {
      try {
        return loadConfig({ MAINTENANCE_INTERVAL_SECONDS: value }, '/srv').maintenanceIntervalSeconds;
      } catch (error) {
        return (error as Error).message.split('\n')[1];
      }
    };
    expect(['60', '0.25', '0.1', '86400'].map(interval)).toEqual([60, 0.25, 0.1, 86400]);
    expect(interval('0.001')).toBe('  MAINTENANCE_INTERVAL_SECONDS: must be at least 0.1 seconds');
    for (const typo of ['0x10', '1e3', ' 5', '-1', '.5', '']) expect(interval(typo), typo).toBe('  MAINTENANCE_INTERVAL_SECONDS: must be a number of seconds, such as 60 or 0.5');
  });

  it('refuses a JWKS cache age or an app-key block over a day: a revoked key would stay trusted, a shared address blocked, that long', () => {
    expect(() => loadConfig({ JWKS_MAX_AGE_SECONDS: '9007199254740991', APP_KEY_FAILURE_WINDOW_SECONDS: '86401' }, '/srv')).toThrow(
      new ConfigError('invalid environment:\n  APP_KEY_FAILURE_WINDOW_SECONDS: must be at most 86400 seconds (a day)\n  JWKS_MAX_AGE_SECONDS: must be at most 86400 seconds (a day)'),
    );
    expect(loadConfig({ JWKS_MAX_AGE_SECONDS: '86400', APP_KEY_FAILURE_WINDOW_SECONDS: '86400' }, '/srv')).toMatchObject({ jwksMaxAgeSeconds: 86400, appKeyFailureWindowSeconds: 86400 });
    expect(loadConfig({}, '/srv')).toMatchObject({ shutdownTimeoutSeconds: 10, maintenanceIntervalSeconds: 60, appKeyFailureIpv6Prefix: 128, databasePath: '/srv/data/tokenmint.db' });
    expect(() => loadConfig({ APP_KEY_FAILURE_IPV6_PREFIX: '129' }, '/srv')).toThrow(new ConfigError('invalid environment:\n  APP_KEY_FAILURE_IPV6_PREFIX: must be a prefix length of at most 128 bits'));
  });

  it('reads DATABASE_URL as a path or a file: URI as SQLite does, and refuses, saying what to write, what would name a file no one meant', () => {
    const fileOf = (url: string) => loadConfig({ DATABASE_URL: url }, '/srv').databasePath;
    expect(fileOf('data/t.db')).toBe('/srv/data/t.db');
    expect(fileOf('file:data/t.db')).toBe('/srv/data/t.db');
    expect(fileOf('sqlite:t.db')).toBe('/srv/t.db');
    expect(fileOf('file:/var/lib/t.db')).toBe('/var/lib/t.db');
    expect(fileOf('file:///var/lib/t.db')).toBe('/var/lib/t.db');
    expect(fileOf('file://localhost/var/lib/t.db')).toBe('/var/lib/t.db');
    expect(fileOf('file:my%20data.db')).toBe('/srv/my data.db');
    expect(fileOf('/srv/odd?name.db')).toBe('/srv/odd?name.db'); // a path is taken as it is
    const refusal = (url: string) => () => fileOf(url);
    expect(refusal(':memory:')).toThrow(/^invalid environment:\n {2}DATABASE_URL: must name a file: the server, its workers and the CLI share it/);
    expect(refusal('file::memory:')).toThrow(/DATABASE_URL: must name a file/);
    expect(refusal('file:')).toThrow(/DATABASE_URL: must name a file/);
    expect(refusal('file:t.db?mode=ro')).toThrow('DATABASE_URL: file:t.db?mode=ro has URI parameters, which tokenmint does not take (it opens the file itself): give the file alone');
    expect(refusal('sqlite://t.db')).toThrow('DATABASE_URL: sqlite://t.db names the host "t.db": for a file in the working folder write file:t.db (or the path alone), for an absolute one file:///…');
    expect(refusal('file:100%.db')).toThrow('DATABASE_URL: file:100%.db has a % that does not start an escape such as %20');
    // Until this version "data/" opened a file named data.
    expect(refusal('data/')).toThrow('DATABASE_URL: data/ names a folder: name the database file in it, such as data/tokenmint.db');
    expect(refusal('file:///var/lib/tokenmint/')).toThrow('DATABASE_URL: file:///var/lib/tokenmint/ names a folder: name the database file in it, such as file:///var/lib/tokenmint/tokenmint.db');
  });

  it('takes a number from the environment only as digits: an empty PORT listened on a random port', () => {
    for (const value of ['', ' ', '1e3', '0x1F90', '8080.0', '+8080']) {
      expect(() => loadConfig({ PORT: value }, '/srv'), JSON.stringify(value)).toThrow(new ConfigError('invalid environment:\n  PORT: must be a whole number'));
    }
    expect(() => loadConfig({ WORKERS: '', SHUTDOWN_TIMEOUT_SECONDS: ' ' }, '/srv')).toThrow(new ConfigError('invalid environment:\n  SHUTDOWN_TIMEOUT_SECONDS: must be a whole number\n  WORKERS: must be a whole number'));
    expect(loadConfig({ PORT: '0' }, '/srv').port).toBe(0); // any free port, when asked for
    // Past 2^53 the bound alone: until this version also "must be a whole number" (zod's .int()).
    expect(() => loadConfig({ PORT: '99999999999999999', APP_KEY_FAILURE_LIMIT: '99999999999999999' }, '/srv')).toThrow(
      new ConfigError('invalid environment:\n  PORT: must be at most 65535\n  APP_KEY_FAILURE_LIMIT: must be at most 9007199254740991'),
    );
    expect(loadConfig({ PORT: '08080', WORKERS: '3' }, '/srv')).toMatchObject({ port: 8080, workers: 3 });
  });

  it('says in its own words that a count must be at least 1 and which log levels there are', () => {
    // Until this version zod's: "Too small: expected number to be >0", "Invalid option: expected one of …".
    expect(() => loadConfig({ WORKERS: '0', JWKS_MAX_AGE_SECONDS: '0', LOG_LEVEL: 'verbose' }, '/srv')).toThrow(
      new ConfigError(
        'invalid environment:\n  LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent\n' +
          '  JWKS_MAX_AGE_SECONDS: must be at least 1\n  WORKERS: must be at least 1',
      ),
    );
    expect(loadConfig({ WORKERS: '1', JWKS_MAX_AGE_SECONDS: '1', LOG_LEVEL: 'warn' }, '/srv')).toMatchObject({ workers: 1, jwksMaxAgeSeconds: 1, logLevel: 'warn' });
  });

  it('says what to do about a variable set but empty, or a metrics token too short to be a secret', () => {
    // Until this version zod's own words: "Too small: expected string to have >=1 characters".
    expect(() => loadConfig({ HOST: '', DATABASE_URL: '', METRICS_TOKEN: 'short' }, '/srv')).toThrow(
      new ConfigError(
        'invalid environment:\n  HOST: is set but empty: give a value, or unset it\n  DATABASE_URL: is set but empty: give a value, or unset it\n' +
          '  METRICS_TOKEN: must be at least 16 characters: a random secret, such as the output of `openssl rand -hex 32`',
      ),
    );
  });
});
