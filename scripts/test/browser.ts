/**
 * Headless Chromium for browser tests: Debian's `chromium` package, driven by playwright-core over
 * CDP. Browsers are never downloaded; `scripts/test.sh` installs the package when /usr/bin/chromium
 * is missing. We start the process ourselves (Playwright's launch() refuses --user-data-dir) with a
 * fresh profile directory, removed on close, and connect to its DevTools endpoint.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.MEGA_CHROMIUM ?? '/usr/bin/chromium';

/** Where tests write artifacts (screenshots); gitignored. */
export const ARTIFACTS = join(import.meta.dirname, '..', '..', '.artifacts');

export interface LaunchedBrowser {
  browser: Browser;
  close(): Promise<void>;
}

function devtoolsUrl(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`chromium did not print its DevTools URL within 30 s:\n${seen.slice(-2000)}`)), 30_000);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      seen += chunk;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(seen);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`chromium exited with ${code} before it was ready:\n${seen.slice(-2000)}`));
    });
  });
}

/** Launches Chromium; throws (never skips) when it is not installed. */
export async function launchChromium(): Promise<LaunchedBrowser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; scripts/test.sh does it)`);
  }
  const profile = mkdtempSync(join(tmpdir(), 'mega-chromium-'));
  const child = spawn(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${profile}`,
      '--remote-debugging-port=0',
      'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let browser: Browser;
  try {
    browser = await chromium.connectOverCDP(await devtoolsUrl(child));
  } catch (error) {
    child.kill('SIGKILL');
    rmSync(profile, { recursive: true, force: true });
    throw error;
  }
  return {
    browser,
    async close() {
      await browser.close().catch(() => undefined);
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
