import { LockClient } from '@lockwire/client';
import { createLockServer, createManualClock, type LockServer, type ManualClock, type ServerLimits } from '@lockwire/server';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { collectPageErrors, launchChromium } from '../helpers/browser.js';

let browser: Browser;
let server: LockServer;
let clock: ManualClock;
let context: BrowserContext;
let pageErrors: string[];
let observer: LockClient;

/** Opens the editor in a new tab of the test's context; `prepare` runs before it loads (a clock, a frame counter). */
async function openEditor(query: string, prepare?: (page: Page) => Promise<void>): Promise<Page> {
  const page = await context.newPage();
  const errors = collectPageErrors(page);
  page.on('close', () => pageErrors.push(...errors));
  await prepare?.(page);
  await page.goto(`${server.httpUrl}/demo/editor?${query}`);
  return page;
}

const who = (page: Page, role: string) => page.locator(`#who[data-role="${role}"]`);

/** Replaces the test's server with one enforcing `limits`, on a new manual clock. */
async function restartWith(limits: Partial<ServerLimits>): Promise<void> {
  await observer.close();
  await server.close();
  clock = createManualClock(Date.now());
  server = await createLockServer({ port: 0, heartbeatInterval: 0, clock, limits });
  observer = await LockClient.connect(server.url);
}

/** Installs a clock in `page` that stands still: its timers run only when the test runs them. */
async function pausedClock(page: Page): Promise<void> {
  await page.clock.install();
  await page.clock.pauseAt(Date.now() + 1000);
}

/** Counts the `acquire` frames `page` sends, from before it loads. */
function countAcquires(page: Page): { sent: number } {
  const count = { sent: 0 };
  page.on('websocket', (socket) =>
    socket.on('framesent', ({ payload }) => {
      if (String(payload).includes('"op":"acquire"')) count.sent++;
    }),
  );
  return count;
}

beforeAll(async () => {
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
});

beforeEach(async () => {
  // No timer of the server runs on its own (no heartbeat, a clock nobody advances):
  // a handoff can only come from the closing tab's socket.
  clock = createManualClock(Date.now());
  server = await createLockServer({ port: 0, heartbeatInterval: 0, clock });
  context = await browser.newContext();
  pageErrors = [];
  observer = await LockClient.connect(server.url);
});

afterEach(async () => {
  await context.close();
  await observer.close();
  await server.close();
  expect(pageErrors).toEqual([]);
});

describe('editor demo', () => {
  it('shows its own key and user escaped, as the dashboard shows keys and meta: no bidi or control character reorders the line', async () => {
    const doc = 'abc\u202egpj.exe\nx';
    const page = await openEditor(`doc=${encodeURIComponent(doc)}&user=${encodeURIComponent('ana\u202eeve')}`);
    await who(page, 'editing').waitFor({ timeout: 5000 });
    const shownKey = 'doc:abc\\u202egpj.exe\\u000ax';
    expect(await page.locator('#doc-key').textContent()).toBe(shownKey);
    expect(await page.locator('#me').textContent()).toMatch(/^user=ana\\u202eeve tab=\w+$/);
    const line = await page.locator('#who').textContent();
    expect(line).toContain(`You are editing ${shownKey} (user=ana\\u202eeve tab=`);
    expect(await page.title()).toBe(`editing · ${shownKey} · lockwire`);
    for (const text of [line, await page.title()]) expect(text).not.toMatch(/[\u202e\n]/);
    // The lock itself is the raw key, as the page was asked for it.
    expect((await observer.status(`doc:${doc}`)).holders.map((holder) => holder.meta)).toEqual([
      { user: 'ana\u202eeve', tab: expect.any(String) },
    ]);
  });

  it('lets only the tab holding doc:<id> type; the other is read-only and names the editor', async () => {
    const first = await openEditor('doc=plan&user=ana');
    await who(first, 'editing').waitFor({ timeout: 5000 });
    expect(await first.locator('#text').isEditable()).toBe(true);
    const tab = (await first.locator('#me').textContent())?.match(/tab=(\w+)/)?.[1];
    expect(tab).toBeTruthy();

    const second = await openEditor('doc=plan&user=bo');
    await who(second, 'waiting').waitFor({ timeout: 5000 });
    expect(await second.locator('#text').isEditable()).toBe(false);
    const line = await second.locator('#who').textContent();
    expect(line).toContain(`user=ana tab=${tab}`);
    expect(line).toContain('number 1 in line');

    // The server agrees: ana's tab holds the key with its meta, bo's waits behind it.
    const status = await observer.status('doc:plan');
    expect(status.holders.map((holder) => holder.meta)).toEqual([{ user: 'ana', tab }]);
    expect(status.queue.map((waiter) => waiter.meta?.user)).toEqual(['bo']);

    await first.locator('#text').fill('agenda: ship it');
    await expect.poll(() => second.locator('#text').inputValue()).toBe('agenda: ship it');
  });

  it('hands the document to the waiting tab without a reload when the editing tab closes', async () => {
    const first = await openEditor('doc=handoff&user=ana');
    await who(first, 'editing').waitFor({ timeout: 5000 });
    const second = await openEditor('doc=handoff&user=bo');
    await who(second, 'waiting').waitFor({ timeout: 5000 });
    // A marker on the window survives only if the page is not reloaded.
    await second.evaluate(() => Object.assign(window, { handoffMarker: 'same page' }));
    await first.close();
    await who(second, 'editing').waitFor({ timeout: 5000 });
    expect(await second.evaluate(() => (window as unknown as { handoffMarker?: string }).handoffMarker)).toBe(
      'same page',
    );
    expect(await second.locator('#text').isEditable()).toBe(true);
    await second.locator('#text').fill('bo took over');
    const status = await observer.status('doc:handoff');
    expect(status.holders.map((holder) => holder.meta?.user)).toEqual(['bo']);
    expect(status.queue).toEqual([]);
  });

  it('shows a third tab the current editor and its new place in line after a handoff', async () => {
    const first = await openEditor('doc=chain&user=ana');
    await who(first, 'editing').waitFor({ timeout: 5000 });
    const second = await openEditor('doc=chain&user=bo');
    await who(second, 'waiting').waitFor({ timeout: 5000 });
    const third = await openEditor('doc=chain&user=cy');
    await who(third, 'waiting').waitFor({ timeout: 5000 });
    expect(await third.locator('#who').textContent()).toContain('user=ana');
    expect(await third.locator('#who').textContent()).toContain('number 2 in line');
    await first.close();
    await who(second, 'editing').waitFor({ timeout: 3000 });
    await expect.poll(() => third.locator('#who').textContent()).toContain('user=bo');
    await expect.poll(() => third.locator('#who').textContent()).toContain('number 1 in line');
    expect(await third.locator('#text').isEditable()).toBe(false);
  });

  it('shows a tab refused a place in line (too_many_waiters) why, and queues it at the next departure from the doc', async () => {
    await restartWith({ maxWaitersPerKey: 1 });
    const first = await openEditor('doc=full&user=ana');
    await who(first, 'editing').waitFor({ timeout: 5000 });
    const second = await openEditor('doc=full&user=bo');
    await who(second, 'waiting').waitFor({ timeout: 5000 });
    const anaTab = (await first.locator('#me').textContent())?.match(/tab=(\w+)/)?.[1];
    // The third tab's timers stand still: only an event of the doc can make it ask again.
    const third = await openEditor('doc=full&user=cy', pausedClock);
    await third.locator('#who[data-refused="too_many_waiters"]').waitFor({ timeout: 5000 });
    expect(await third.locator('#who').getAttribute('data-role')).toBe('readonly');
    expect(await third.locator('#who').textContent()).toBe(
      `Read-only: user=ana tab=${anaTab} is editing.` +
        ' This tab could not join the line (too_many_waiters: the line for this document is full);' +
        ' trying again in 0.3s, or as soon as someone leaves the document or its line.',
    );
    await first.close();
    await who(second, 'editing').waitFor({ timeout: 5000 });
    await who(third, 'waiting').waitFor({ timeout: 5000 });
    expect(await third.locator('#who').getAttribute('data-refused')).toBeNull();
    await second.close();
    await who(third, 'editing').waitFor({ timeout: 5000 });
    expect((await observer.status('doc:full')).holders.map((holder) => holder.meta?.user)).toEqual(['cy']);
  });

  it('asks again after a rate_limited acquire, 250 ms later and then twice as long, until the server takes it', async () => {
    // One frame at once, refilled only as the server's clock moves: the watch takes it, the acquire is refused.
    await restartWith({ rateBurst: 1, rateLimit: 1 });
    let acquires = { sent: 0 };
    const page = await openEditor('doc=slow&user=ana', async (tab) => {
      acquires = countAcquires(tab);
      await pausedClock(tab);
    });
    await page.locator('#who[data-refused="rate_limited"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#who').textContent()).toContain('trying again in 0.3s.');
    expect(acquires.sent).toBe(1);
    await page.clock.runFor(250);
    await expect.poll(() => acquires.sent, { timeout: 5000 }).toBe(2);
    await expect.poll(() => page.locator('#who').textContent(), { timeout: 5000 }).toContain('trying again in 0.5s.');
    clock.advance(1000);
    await page.clock.runFor(500);
    await who(page, 'editing').waitFor({ timeout: 5000 });
    expect(acquires.sent).toBe(3);
  });
});
