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

  it('refuses a JWKS cache age or an app-key block over a day: a revoked key would stay trusted, a shared address blocked, that long', () => {
    expect(() => loadConfig({ JWKS_MAX_AGE_SECONDS: '9007199254740991', APP_KEY_FAILURE_WINDOW_SECONDS: '86401' }, '/srv')).toThrow(
      new ConfigError('invalid environment:\n  APP_KEY_FAILURE_WINDOW_SECONDS: must be at most 86400 seconds (a day)\n  JWKS_MAX_AGE_SECONDS: must be at most 86400 seconds (a day)'),
    );
    expect(loadConfig({ JWKS_MAX_AGE_SECONDS: '86400', APP_KEY_FAILURE_WINDOW_SECONDS: '86400' }, '/srv')).toMatchObject({ jwksMaxAgeSeconds: 86400, appKeyFailureWindowSeconds: 86400 });
    expect(loadConfig({}, '/srv')).toMatchObject({ shutdownTimeoutSeconds: 10, maintenanceIntervalSeconds: 60, databasePath: '/srv/data/tokenmint.db' });
  });
});
