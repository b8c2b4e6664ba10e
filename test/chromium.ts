import fs from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { onCleanup } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** CI installs Chromium (.ci/run) and must run the browser tests; a developer machine without it skips them. */
export const runBrowser = fs.existsSync(CHROMIUM) || Boolean(process.env.CI);

/** Debian's headless Chromium through playwright-core (no browser download), closed after the test. */
export async function launchChromium(): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  onCleanup(() => browser.close());
  return browser;
}
