import { createLockServer, createManualClock, type LockServer, type ManualClock } from '@lockwire/server';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signToken } from '../../server/src/cli-token.js';
import { collectPageErrors, launchChromium } from '../helpers/browser.js';

const SECRET = 'dashboard-access-test-secret-of-enough-length';
let browser: Browser;
let server: LockServer | undefined;
let context: BrowserContext | undefined;
let pageErrors: string[] = [];

beforeAll(async () => {
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
});

afterEach(async () => {
  await context?.close();
  context = undefined;
  await server?.close();
  server = undefined;
  // The browser's own line for a socket that failed to open (it names the URL it was given) is not the page's error.
  expect(pageErrors.filter((error) => !error.startsWith('console.error: WebSocket connection to'))).toEqual([]);
});

/** A server with auth on, on a clock that moves only when the test advances it. */
async function authServer(clock: ManualClock): Promise<LockServer> {
  server = await createLockServer({ port: 0, auth: { secret: SECRET }, clock });
  return server;
}

const token = (clock: ManualClock, ttlSeconds = 600) =>
  signToken({ sub: 'ops', locks: ['*'], watch: ['*'], steal: [], admin: [] }, { secret: SECRET, ttlSeconds, now: clock.now() });

async function newPage(): Promise<Page> {
  context = await browser.newContext();
  const page = await context.newPage();
  pageErrors = collectPageErrors(page);
  return page;
}

describe('dashboard with auth on', () => {
  it('names the server it cannot reach with the access token of its URL redacted', async () => {
    const clock = createManualClock(Date.now());
    const live = await authServer(clock);
    const secret = await token(clock);
    const page = await newPage();
    await page.goto(`${live.httpUrl}/?access_token=${encodeURIComponent(secret)}`);
    await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 5000 });
    await live.close();
    server = undefined;
    await expect.poll(() => page.locator('#notice').textContent(), { timeout: 10_000 }).toContain('Cannot reach');
    expect(await page.locator('#notice').textContent()).toContain('/v1?access_token=REDACTED');
    const shown = await page.locator('body').innerText();
    expect(shown).not.toContain(secret);
    expect(shown).not.toContain(encodeURIComponent(secret));
  });

  it('links to the editor demo with the token it was opened with, and the editor links back with it', async () => {
    const clock = createManualClock(Date.now());
    const live = await authServer(clock);
    const page = await newPage();
    await page.goto(`${live.httpUrl}/?access_token=${encodeURIComponent(await token(clock))}`);
    await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 5000 });
    const [editor] = await Promise.all([
      page.waitForResponse((response) => new URL(response.url()).pathname === '/demo/editor'),
      page.locator('a[href^="/demo/editor"]').click(),
    ]);
    expect(editor.status()).toBe(200);
    await page.locator('#who[data-role="editing"]').waitFor({ timeout: 5000 });
    const [dashboard] = await Promise.all([
      page.waitForResponse((response) => new URL(response.url()).pathname === '/'),
      page.locator('a#dashboard-link').click(),
    ]);
    expect(dashboard.status()).toBe(200);
    await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 5000 });
  });
});
