import { ErrorCode } from '@lockwire/protocol';
import { createLockServer, createMemoryStore, LockError, type LockServer, type LockStore } from '@lockwire/server';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { collectPageErrors, useChromium } from '../helpers/browser.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const chromium = useChromium();
let server: LockServer | undefined;
let proxy: TcpProxy | undefined;
let pageErrors: string[] = [];

afterEach(async () => {
  await chromium.closeContext();
  await proxy?.close();
  proxy = undefined;
  await server?.close();
  server = undefined;
  expect(pageErrors).toEqual([]);
});

/**
 * A memory store that refuses watches with `store_unavailable` while
 * `refusing()` says so, as a store cut off from its backing does.
 */
function storeRefusingWatches(refusing: () => boolean): LockStore {
  const store = createMemoryStore();
  const watch = store.watch.bind(store);
  store.watch = async (...args) => {
    if (refusing()) throw new LockError(ErrorCode.StoreUnavailable, 'lost contact with the lock store');
    return watch(...args);
  };
  return store;
}

/**
 * Opens the editor at `query` on `origin` (default: the server's) with its
 * timers standing still (they run only when the test runs them) and the
 * WebSockets it opens counted in `window.opened`.
 */
async function openEditor(query: string, origin = server?.httpUrl): Promise<Page> {
  if (!server) throw new Error('start a server first');
  const page = await (await chromium.context()).newPage();
  pageErrors = collectPageErrors(page);
  await page.addInitScript(() => {
    const Original = window.WebSocket;
    const counted = window as unknown as { opened: number };
    counted.opened = 0;
    window.WebSocket = class extends Original {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        counted.opened++;
      }
    };
  });
  await page.clock.install();
  await page.clock.pauseAt(Date.now() + 1000);
  await page.goto(`${origin}/demo/editor?${query}`);
  return page;
}

const opened = (page: Page) => page.evaluate(() => (window as unknown as { opened: number }).opened);

describe('editor demo whose watch of the document the server refuses', () => {
  it('says why and stops, read-only, when the refusal is final (bad_request: a doc id too long for a key)', async () => {
    server = await createLockServer({ port: 0, heartbeatInterval: 0 });
    const page = await openEditor(`doc=${'x'.repeat(300)}&user=ana`);
    await page.locator('#who[data-refused="bad_request"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#who').getAttribute('data-role')).toBe('readonly');
    expect(await page.locator('#who').textContent()).toBe(
      `Read-only: you may not edit doc:${'x'.repeat(300)}: the server refused to watch it` +
        ' (bad_request: prefix: longer than maxKeyLength (256)).',
    );
    expect(await page.locator('#conn-state').getAttribute('data-state')).toBe('refused');
    expect(await page.locator('#text').isEditable()).toBe(false);
    // Longer than any reconnect backoff: a tab that took the refusal for a drop would have connected again.
    await page.clock.runFor(60_000);
    expect(await opened(page)).toBe(1);
    expect(await page.locator('#who').getAttribute('data-refused')).toBe('bad_request');
    await expect.poll(() => server?.sessionCount(), { timeout: 3000 }).toBe(0);
  });

  it('says why and connects again after the backoff when the refusal is of the moment (store_unavailable), then edits', async () => {
    let watches = 0;
    server = await createLockServer({ port: 0, heartbeatInterval: 0, store: storeRefusingWatches(() => watches++ < 1) });
    const page = await openEditor('doc=flaky&user=ana');
    await page.locator('#who[data-refused="store_unavailable"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#who').getAttribute('data-role')).toBe('offline');
    expect(await page.locator('#who').textContent()).toMatch(
      /^Not connected: the server refused to watch doc:flaky \(store_unavailable: the server's lock store is unavailable\); trying again in \d\.\ds\.$/,
    );
    expect(await page.locator('#conn-state').getAttribute('data-state')).toBe('disconnected');
    expect(await opened(page)).toBe(1);
    await page.clock.runFor(1000);
    await page.locator('#who[data-role="editing"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#who').getAttribute('data-refused')).toBeNull();
    expect(await opened(page)).toBe(2);
    expect(await page.locator('#text').isEditable()).toBe(true);
  });

  it('closes the connection of each attempt whose watch was refused, so retrying leaves no session behind on the server', async () => {
    server = await createLockServer({ port: 0, heartbeatInterval: 0, store: storeRefusingWatches(() => true) });
    const page = await openEditor('doc=down&user=ana');
    await page.locator('#who[data-refused="store_unavailable"]').waitFor({ timeout: 5000 });
    // An attempt's backoff starts once its refusal is in: run the page's clock a step at a time until two more were made.
    const attempts = async () => {
      await page.clock.runFor(250);
      return opened(page);
    };
    await expect.poll(attempts, { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
    expect(await page.locator('#conn-state').getAttribute('data-state')).toBe('disconnected');
    await expect.poll(() => server?.sessionCount(), { timeout: 3000 }).toBe(0);
  });

  it('says why and connects again when the watch is refused for the moment after a reconnect, then edits again', async () => {
    let refusing = false;
    server = await createLockServer({ port: 0, heartbeatInterval: 0, store: storeRefusingWatches(() => refusing) });
    proxy = await startTcpProxy(Number(new URL(server.httpUrl).port));
    const page = await openEditor('doc=rewatch&user=ana', new URL(proxy.url(server.httpUrl)).origin);
    await page.locator('#who[data-role="editing"]').waitFor({ timeout: 5000 });
    refusing = true;
    proxy.cut();
    await page.locator('#who[data-role="offline"]').waitFor({ timeout: 5000 });
    // The client's own reconnect after the drop, on the page's clock: its watch of the document is asked again, and refused.
    const refusal = async () => {
      await page.clock.runFor(250);
      return page.locator('#who').getAttribute('data-refused');
    };
    await expect.poll(refusal, { timeout: 10_000 }).toBe('store_unavailable');
    expect(await page.locator('#who').textContent()).toMatch(
      /^Not connected: the server refused to watch doc:rewatch \(store_unavailable: the server's lock store is unavailable\); trying again in \d\.\ds\.$/,
    );
    expect(await opened(page)).toBe(2);
    refusing = false;
    await page.clock.runFor(1000);
    await page.locator('#who[data-role="editing"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#who').getAttribute('data-refused')).toBeNull();
    expect(await opened(page)).toBe(3);
  });
});
