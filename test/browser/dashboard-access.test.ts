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
  expect(pageErrors.filter((error) => !isNetworkLine(error))).toEqual([]);
});

/**
 * The browser's own console lines for a request or socket that failed (a
 * server gone, a 401): the tests make those happen, and they are not errors
 * of the page's script.
 */
function isNetworkLine(error: string): boolean {
  return error.startsWith('console.error: WebSocket connection to') || error.startsWith('console.error: Failed to load resource:');
}

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

/** Counts the page's WebSocket attempts and the close codes they ended with, in `window.sockets`. */
async function countSockets(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const Original = window.WebSocket;
    const sockets = { opened: 0, closes: [] as number[] };
    Object.assign(window, { sockets });
    window.WebSocket = class extends Original {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        sockets.opened++;
        this.addEventListener('close', (event) => sockets.closes.push(event.code));
      }
    };
  });
}

const sockets = (page: Page) =>
  page.evaluate(() => (window as unknown as { sockets: { opened: number; closes: number[] } }).sockets);

/**
 * Runs the page's (installed, paused) clock past every reconnect delay
 * (10 s at most, with jitter), then reads its sockets: a page that still
 * retries has opened another by then.
 */
async function socketsAfterBackoff(page: Page): Promise<{ opened: number; closes: number[] }> {
  await page.clock.runFor(30_000);
  return sockets(page);
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

  it('stops reconnecting and says the token expired when the server closes it with 1008', async () => {
    const clock = createManualClock(Date.now());
    const live = await authServer(clock);
    const page = await newPage();
    await countSockets(page);
    await page.clock.install();
    await page.goto(`${live.httpUrl}/?access_token=${encodeURIComponent(await token(clock, 60))}`);
    await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 5000 });
    // From here on the page's timers, its reconnect delay among them, run only when the test runs them.
    await page.clock.pauseAt(Date.now() + 1000);
    clock.advance(61_000);
    await page.locator('#conn-state[data-state="refused"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#notice').textContent()).toBe(
      'Access refused (1008: credentials expired): the token expired or is not valid. Reopen the page with a new token.',
    );
    expect(await socketsAfterBackoff(page)).toEqual({ opened: 1, closes: [1008] });
    expect(await page.locator('#conn-state').getAttribute('data-state')).toBe('refused');
  });

  it('stops reconnecting and says so when its first connect is refused 401 (the token expired after the page loaded)', async () => {
    const clock = createManualClock(Date.now());
    const live = await authServer(clock);
    const page = await newPage();
    await countSockets(page);
    await page.clock.install();
    await page.clock.pauseAt(Date.now() + 1000);
    // The page itself is admitted; by the time its script connects, the token has expired.
    await page.route('**/ui/dashboard.js', async (route) => {
      clock.advance(61_000);
      await route.continue();
    });
    await page.goto(`${live.httpUrl}/?access_token=${encodeURIComponent(await token(clock, 60))}`);
    await page.locator('#conn-state[data-state="refused"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#notice').textContent()).toBe(
      'Access refused (401): the token expired or is not valid. Reopen the page with a new token.',
    );
    expect((await socketsAfterBackoff(page)).opened).toBe(1);
  });
});

describe('editor demo with auth on', () => {
  it('stops reconnecting and says the token expired when the server closes it with 1008', async () => {
    const clock = createManualClock(Date.now());
    const live = await authServer(clock);
    const page = await newPage();
    await countSockets(page);
    await page.clock.install();
    await page.goto(`${live.httpUrl}/demo/editor?doc=auth&user=ana&access_token=${encodeURIComponent(await token(clock, 60))}`);
    await page.locator('#who[data-role="editing"]').waitFor({ timeout: 5000 });
    await page.clock.pauseAt(Date.now() + 1000);
    clock.advance(61_000);
    await page.locator('#conn-state[data-state="refused"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#who').textContent()).toBe(
      'Access refused (1008: credentials expired): the token expired or is not valid. Reopen the page with a new token.',
    );
    expect(await page.locator('#text').isEditable()).toBe(false);
    expect(await socketsAfterBackoff(page)).toEqual({ opened: 1, closes: [1008] });
  });

  it('says the user may not edit when the token does not allow the doc, and does not ask again', async () => {
    const clock = createManualClock(Date.now());
    const live = await authServer(clock);
    const readOnly = await signToken(
      { sub: 'ana', locks: ['room:*'], watch: ['*'], steal: [], admin: [] },
      { secret: SECRET, ttlSeconds: 600, now: clock.now() },
    );
    const page = await newPage();
    let acquires = 0;
    page.on('websocket', (socket) =>
      socket.on('framesent', ({ payload }) => {
        if (String(payload).includes('"op":"acquire"')) acquires++;
      }),
    );
    await page.clock.install();
    await page.clock.pauseAt(Date.now() + 1000);
    await page.goto(`${live.httpUrl}/demo/editor?doc=locked&user=ana&access_token=${encodeURIComponent(readOnly)}`);
    await page.locator('#who[data-refused="forbidden"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#who').textContent()).toBe(
      'Read-only: you may not edit doc:locked (forbidden: the token does not allow this user to edit it).',
    );
    expect(await page.locator('#text').isEditable()).toBe(false);
    await page.clock.runFor(30_000);
    expect(acquires).toBe(1);
    expect(await page.locator('#conn-state').getAttribute('data-state')).toBe('live');
  });
});
