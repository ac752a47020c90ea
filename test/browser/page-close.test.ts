/**
 * Pages that close, in Chromium with its back/forward cache on as users'
 * browsers have it (pages that navigate away are tested in
 * back-forward-cache.test.ts), with session grace off and on: a page's
 * locks go to the next waiter the moment it closes, unless it opted out.
 */
import { LockClient } from '@lockwire/client';
import { createLockServer, createManualClock, type LockServer } from '@lockwire/server';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { collectPageErrors, useChromium } from '../helpers/browser.js';
import { openClientPage } from '../helpers/page-history.js';

/** A minute of grace on a manual clock that never moves: with it on, only a close can release a page's locks. */
const GRACE_MS = 60_000;

const chromium = useChromium({ backForwardCache: true });
let server: LockServer | undefined;
const clients: LockClient[] = [];
let pageErrors: string[] = [];
/** Sessions the server kept for their grace after their socket closed. */
let detached: string[] = [];

afterEach(async () => {
  await chromium.closeContext();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await server?.close();
  server = undefined;
  detached = [];
  expect(pageErrors).toEqual([]);
  pageErrors = [];
});

/** Starts the test's server with `sessionGrace`, noting the sessions it keeps for their grace, and connects an observer. */
async function start(sessionGrace: number): Promise<{ live: LockServer; observer: LockClient }> {
  const ignore = () => undefined;
  const live = await createLockServer({
    port: 0,
    clock: createManualClock(Date.now()),
    sessionGrace,
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
  server = live;
  const observer = await LockClient.connect(live.url);
  clients.push(observer);
  return { live, observer };
}

/** A new page whose errors count against the test once it closes. */
async function newPage(): Promise<Page> {
  const page = await (await chromium.context()).newPage();
  const errors = collectPageErrors(page);
  page.on('close', () => pageErrors.push(...errors));
  return page;
}

/** Connects in `page` (with `transport` options when given), acquires `key`, and returns the session. */
function holdInPage(page: Page, url: string, key: string, transport?: { closeOnPageHide: boolean }): Promise<string> {
  return page.evaluate(
    async ([serverUrl, lockKey, options]) => {
      const { LockClient: Client, createWebSocketTransport } = (window as unknown as { lockwire: typeof import('@lockwire/client') })
        .lockwire;
      const client = await Client.connect(serverUrl, options ? { transport: createWebSocketTransport(options) } : {});
      await client.acquire(lockKey);
      return client.session;
    },
    [url, key, transport] as const,
  );
}

for (const sessionGrace of [0, GRACE_MS]) {
  describe(`closing a page that uses the browser client, session grace ${sessionGrace} ms`, () => {
    it('ends its session at once, so its lock goes to the next waiter when the page closes', async () => {
      const { live, observer } = await start(sessionGrace);
      const page = await newPage();
      await openClientPage(page, live.httpUrl);
      const session = await holdInPage(page, live.url, 'page:close');
      const waiting = observer.acquire('page:close');
      waiting.catch(() => undefined);
      await expect.poll(async () => (await observer.status('page:close')).queue.length).toBe(1);
      await page.close();
      await expect
        .poll(async () => (await observer.status('page:close')).holders.map((holder) => holder.session), { timeout: 3000 })
        .toEqual([observer.session]);
      expect((await waiting)?.token).toBeGreaterThan(0);
      expect(detached).not.toContain(session);
      expect(live.sessionCount()).toBe(1);
    });
  });

  describe(`the editor demo, session grace ${sessionGrace} ms`, () => {
    it('hands the document to the waiting tab the moment the editing tab closes', async () => {
      const { live } = await start(sessionGrace);
      const first = await newPage();
      await first.goto(`${live.httpUrl}/demo/editor?doc=grace&user=ana`);
      await first.locator('#who[data-role="editing"]').waitFor({ timeout: 5000 });
      const second = await newPage();
      await second.goto(`${live.httpUrl}/demo/editor?doc=grace&user=bo`);
      await second.locator('#who[data-role="waiting"]').waitFor({ timeout: 5000 });
      await first.close();
      await second.locator('#who[data-role="editing"]').waitFor({ timeout: 3000 });
    });
  });
}

describe('closing a page that opted out of closing its socket, session grace on', () => {
  it('keeps the lock for the grace when the page opted out with closeOnPageHide: false', async () => {
    const { live, observer } = await start(GRACE_MS);
    const page = await newPage();
    await openClientPage(page, live.httpUrl);
    const session = await holdInPage(page, live.url, 'page:kept', { closeOnPageHide: false });
    await page.close();
    await expect.poll(() => detached, { timeout: 3000 }).toContain(session);
    const status = await observer.status('page:kept');
    expect(status.holders.map((holder) => holder.session)).toEqual([session]);
  });
});
