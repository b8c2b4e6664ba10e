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
    expect(loadConfig({}, '/srv')).toMatchObject({ shutdownTimeoutSeconds: 10, maintenanceIntervalSeconds: 60, databasePath: '/srv/data/tokenmint.db' });
  });
});
