/**
 * The README's "In the browser: exclusive editing" examples, run verbatim
 * (read from README.md) in Chromium against a real server: the bare
 * WebSocket one and the `@lockwire/client` one. Chromium keeps its
 * back/forward cache on, as users' browsers do, so a tab that navigates
 * away is frozen with its page rather than unloaded.
 */
import { readFileSync } from 'node:fs';
import { LockClient } from '@lockwire/client';
import { createLockServer, createManualClock, type LockServer, type LockServerOptions } from '@lockwire/server';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { collectPageErrors, useChromium } from '../helpers/browser.js';
import { comeBackFromCache, leaveIntoCache, noteTransitions, openClientPage } from '../helpers/page-history.js';

const README = new URL('../../README.md', import.meta.url);
const SECTION = '## In the browser: exclusive editing';
/** The URL the examples connect to; the tests put their server's in its place. */
const EXAMPLE_URL = "'ws://127.0.0.1:7311/v1'";

const chromium = useChromium({ backForwardCache: true });
let server: LockServer | undefined;
let pageErrors: string[] = [];
const clients: LockClient[] = [];

/** The `js` code blocks of the README's browser section, in order. */
function readmeExamples(): string[] {
  const text = readFileSync(README, 'utf8');
  const start = text.indexOf(SECTION);
  const end = text.indexOf('\n## ', start + SECTION.length);
  const section = text.slice(start, end);
  const blocks = [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
  expect(start).toBeGreaterThan(0);
  expect(blocks).toHaveLength(2);
  return blocks;
}

/** The example as a script for the page: the server's URL in place of the example's, the client from the bundle. */
function asPageScript(example: string, url: string): string {
  expect(example).toContain(EXAMPLE_URL);
  const body = example
    .replace(EXAMPLE_URL, JSON.stringify(url))
    .replace("import { LockClient } from '@lockwire/client';", 'const { LockClient } = window.lockwire;');
  // `editor` and `banner` stand for the page's textarea and banner; every text the banner showed is kept, in order.
  return `(async () => {
    const editor = (window.editor = { readOnly: true });
    const shown = (window.bannerShown = []);
    const banner = {
      get textContent() { return shown.at(-1) ?? ''; },
      set textContent(text) { shown.push(text); },
    };
    ${body}
  })()`;
}

async function start(options: LockServerOptions = {}): Promise<LockServer> {
  server = await createLockServer({ port: 0, clock: createManualClock(Date.now()), ...options });
  return server;
}

async function connect(live: LockServer): Promise<LockClient> {
  const client = await LockClient.connect(live.url);
  clients.push(client);
  return client;
}

/** A tab of the server's origin running the README example `index`, once it has started. */
async function exampleTab(live: LockServer, index: number): Promise<Page> {
  const page = await (await chromium.context()).newPage();
  const errors = collectPageErrors(page);
  page.on('close', () => pageErrors.push(...errors));
  await noteTransitions(page);
  await openClientPage(page, live.httpUrl);
  const example = readmeExamples()[index] ?? '';
  void page.evaluate(asPageScript(example, live.url)).catch(() => undefined);
  return page;
}

const readOnly = (page: Page) => page.evaluate(() => (window as unknown as { editor: { readOnly: boolean } }).editor.readOnly);

/** Waits until the example holds doc:42: its editor is no longer read-only. */
async function editing(page: Page): Promise<void> {
  await page.waitForFunction(() => (window as unknown as { editor: { readOnly: boolean } }).editor.readOnly === false, undefined, {
    timeout: 5000,
  });
}

const bannerShown = (page: Page) => page.evaluate(() => (window as unknown as { bannerShown: string[] }).bannerShown);

afterEach(async () => {
  await chromium.closeContext();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await server?.close();
  server = undefined;
  expect(pageErrors).toEqual([]);
  pageErrors = [];
});

describe.each([
  ['bare WebSocket', 0],
  ['@lockwire/client', 1],
])('README browser example with %s', (_name, index) => {
  it('names only who edits doc:42 in its banner, never the holder of a longer key sharing the prefix', async () => {
    const live = await start();
    const page = await exampleTab(live, index);
    await editing(page);
    const other = await connect(live);
    await other.acquire('doc:420', { meta: { user: 'Zed' } });
    await other.acquire('doc:42-archive', { meta: { user: 'Zed' } });
    // Events reach the page in order: once the banner names Cy, the page has handled the two before.
    await other.acquire('doc:42', { steal: true, meta: { user: 'Cy' } });
    await expect.poll(async () => (await bannerShown(page)).at(-1), { timeout: 5000 }).toBe('Cy is editing');
    expect(await bannerShown(page)).toEqual(['Ana is editing', 'Cy is editing']);
  });

  it('hands doc:42 to the waiting tab the moment the editing tab closes, also with session grace on', async () => {
    const live = await start({ heartbeatInterval: 0, sessionGrace: 60_000 });
    const page = await exampleTab(live, index);
    await editing(page);
    const bo = await connect(live);
    const waiting = bo.acquire('doc:42', { meta: { user: 'Bo' } });
    waiting.catch(() => undefined);
    await expect.poll(async () => (await bo.status('doc:42')).queue.length).toBe(1);
    await page.close();
    await expect
      .poll(async () => (await bo.status('doc:42')).holders.map((holder) => holder.meta?.user), { timeout: 3000 })
      .toEqual(['Bo']);
    expect(await waiting).not.toBeNull();
  });

  it.each([0, 60_000])(
    'hands doc:42 to the waiting tab the moment the editing tab navigates away, and queues again behind it when the tab comes back (session grace %i ms)',
    async (sessionGrace) => {
      const live = await start({ heartbeatInterval: 0, sessionGrace });
      const page = await exampleTab(live, index);
      await editing(page);
      const bo = await connect(live);
      const waiting = bo.acquire('doc:42', { meta: { user: 'Bo' } });
      waiting.catch(() => undefined);
      await expect.poll(async () => (await bo.status('doc:42')).queue.length).toBe(1);
      const from = await leaveIntoCache(page, live.httpUrl);
      await expect
        .poll(async () => (await bo.status('doc:42')).holders.map((holder) => holder.meta?.user), { timeout: 3000 })
        .toEqual(['Bo']);
      const lease = await waiting;
      await comeBackFromCache(page, from);
      await expect
        .poll(async () => (await bo.status('doc:42')).queue.map((waiter) => waiter.meta?.user), { timeout: 5000 })
        .toEqual(['Ana']);
      expect(await readOnly(page)).toBe(true);
      await expect.poll(async () => (await bannerShown(page)).at(-1), { timeout: 5000 }).toBe('Bo is editing');
      await lease?.release();
      await editing(page);
    },
  );
});
