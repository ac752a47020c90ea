import { LockClient } from '@lockwire/client';
import { createLockServer, createManualClock, type LockServer } from '@lockwire/server';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { collectPageErrors, launchChromium } from '../helpers/browser.js';

const BLANK_PAGE = `<!doctype html><title>blank</title><link rel="icon" href="data:,">
<script type="module">import * as lockwire from '/ui/lockwire-client.js'; window.lockwire = lockwire;</script>`;

/** A minute of grace on a manual clock that never moves: only a close can release a page's locks. */
const GRACE_MS = 60_000;

let browser: Browser;
let server: LockServer;
let context: BrowserContext;
let pageErrors: string[];
let observer: LockClient;
/** Sessions the server kept for their grace after their socket closed. */
let detached: string[];

beforeAll(async () => {
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
});

beforeEach(async () => {
  detached = [];
  const ignore = () => undefined;
  server = await createLockServer({
    port: 0,
    clock: createManualClock(Date.now()),
    sessionGrace: GRACE_MS,
    logger: {
      debug: (fields, message) => {
        const session = (fields as { session?: unknown }).session;
        if (message.startsWith('session detached') && typeof session === 'string') detached.push(session);
      },
      info: ignore,
      warn: ignore,
      error: ignore,
    },
  });
  observer = await LockClient.connect(server.url);
  context = await browser.newContext();
  pageErrors = [];
});

afterEach(async () => {
  await context.close();
  await observer.close();
  await server.close();
  expect(pageErrors).toEqual([]);
});

/** A new page whose errors count against the test once it closes. */
async function newPage(): Promise<Page> {
  const page = await context.newPage();
  const errors = collectPageErrors(page);
  page.on('close', () => pageErrors.push(...errors));
  return page;
}

/** A page of the server's origin that loads the browser client bundle and nothing else. */
async function blankPage(): Promise<Page> {
  const page = await newPage();
  await page.goto(`${server.httpUrl}/healthz`);
  await page.setContent(BLANK_PAGE);
  await page.waitForFunction(() => 'lockwire' in window, undefined, { timeout: 5000 });
  return page;
}

/** Connects in the page (with `transport` options when given), acquires `key`, and returns the session. */
function holdInPage(page: Page, key: string, transport?: { closeOnPageHide: boolean }): Promise<string> {
  return page.evaluate(
    async ([url, lockKey, options]) => {
      const { LockClient: Client, createWebSocketTransport } = (window as unknown as { lockwire: typeof import('@lockwire/client') })
        .lockwire;
      const client = await Client.connect(url, options ? { transport: createWebSocketTransport(options) } : {});
      await client.acquire(lockKey);
      return client.session;
    },
    [server.url, key, transport] as const,
  );
}

describe('closing a page that uses the browser client', () => {
  it('ends its session at once, so with session grace on its lock goes to the next waiter when the page closes', async () => {
    const page = await blankPage();
    const session = await holdInPage(page, 'page:close');
    const waiting = observer.acquire('page:close');
    await expect.poll(async () => (await observer.status('page:close')).queue.length).toBe(1);
    await page.close();
    await expect
      .poll(async () => (await observer.status('page:close')).holders.map((holder) => holder.session), { timeout: 3000 })
      .toEqual([observer.session]);
    expect((await waiting)?.token).toBeGreaterThan(0);
    expect(detached).not.toContain(session);
  });

  it('keeps the lock for the grace when the page opted out with closeOnPageHide: false', async () => {
    const page = await blankPage();
    const session = await holdInPage(page, 'page:kept', { closeOnPageHide: false });
    await page.close();
    await expect.poll(() => detached, { timeout: 3000 }).toContain(session);
    const status = await observer.status('page:kept');
    expect(status.holders.map((holder) => holder.session)).toEqual([session]);
  });
});

describe('the editor demo with session grace on', () => {
  it('hands the document to the waiting tab the moment the editing tab closes', async () => {
    const first = await newPage();
    await first.goto(`${server.httpUrl}/demo/editor?doc=grace&user=ana`);
    await first.locator('#who[data-role="editing"]').waitFor({ timeout: 5000 });
    const second = await newPage();
    await second.goto(`${server.httpUrl}/demo/editor?doc=grace&user=bo`);
    await second.locator('#who[data-role="waiting"]').waitFor({ timeout: 5000 });
    await first.close();
    await second.locator('#who[data-role="editing"]').waitFor({ timeout: 3000 });
  });
});
