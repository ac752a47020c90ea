import { LockClient } from '@lockwire/client';
import {
  createLockServer,
  createManualClock,
  createMemoryStore,
  type LockServer,
  type LockStore,
  type ManualClock,
} from '@lockwire/server';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { collectPageErrors, useChromium } from '../helpers/browser.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const chromium = useChromium();
let server: LockServer | undefined;
let proxy: TcpProxy | undefined;
let pageErrors: string[] = [];
const clients: LockClient[] = [];

afterEach(async () => {
  await chromium.closeContext();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await proxy?.close();
  proxy = undefined;
  await server?.close();
  server = undefined;
  expect(pageErrors).toEqual([]);
});

async function start(store?: (clock: ManualClock) => LockStore): Promise<LockServer> {
  const clock = createManualClock(Date.now());
  server = await createLockServer({ port: 0, heartbeatInterval: 0, clock, ...(store ? { store: store(clock) } : {}) });
  return server;
}

/**
 * A memory store whose watch snapshots hold at most `cutAt()` keys, marked
 * truncated past it, as a store's are past the snapshot's `limit`
 * (`undefined`: whole snapshots).
 */
function storeCuttingSnapshots(cutAt: () => number | undefined): (clock: ManualClock) => LockStore {
  return (clock) => {
    const store = createMemoryStore({ clock });
    const watch = store.watch.bind(store);
    store.watch = async (...args) => {
      const handle = await watch(...args);
      const cut = cutAt();
      if (cut === undefined || handle.snapshot.locks.length <= cut) return handle;
      return { ...handle, snapshot: { locks: handle.snapshot.locks.slice(0, cut), truncated: true } };
    };
    return store;
  };
}

async function connect(live: LockServer): Promise<LockClient> {
  const client = await LockClient.connect(live.url);
  clients.push(client);
  return client;
}

async function openDashboard(live: LockServer, origin = live.httpUrl): Promise<Page> {
  const page = await (await chromium.context()).newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  pageErrors = collectPageErrors(page);
  await page.goto(`${origin}/`);
  await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 5000 });
  return page;
}

const cell = (page: Page, keyStart: string, name: string) =>
  page.locator(`.lock-row[data-key^="${keyStart}"] .cell.${name}`).textContent();

describe('dashboard table text', () => {
  it('shows C1 control characters of a key escaped, as it does C0 ones', async () => {
    const live = await start();
    const ana = await connect(live);
    await ana.acquire('c1:\u0085\u009b[2J');
    await ana.acquire('c0:\u001b[2J');
    const page = await openDashboard(live);
    await page.locator('.lock-row[data-key^="c1:"]').waitFor({ timeout: 3000 });
    expect(await cell(page, 'c0:', 'key')).toBe('c0:\\u001b[2J');
    expect(await cell(page, 'c1:', 'key')).toBe('c1:\\u0085\\u009b[2J');
  });

  it('shows the bidi controls of a key and of its holder meta escaped, so neither reads reordered', async () => {
    const live = await start();
    const ana = await connect(live);
    await ana.acquire('bidi:invoice-\u202etxt.exe', { meta: { user: 'ana\u2066\u200f', 'tab\u0085': '3f' } });
    const page = await openDashboard(live);
    await page.locator('.lock-row[data-key^="bidi:"]').waitFor({ timeout: 3000 });
    expect(await cell(page, 'bidi:', 'key')).toBe('bidi:invoice-\\u202etxt.exe');
    expect(await cell(page, 'bidi:', 'holders')).toContain('user=ana\\u2066\\u200f tab\\u0085=3f');
  });
});

/** What the page says of its table's size: the shown count and the held-locks counter, with their partial marks. */
async function sizes(page: Page): Promise<Record<string, string | null>> {
  const shown = page.locator('#shown');
  const held = page.locator('#count-held');
  return {
    shown: await shown.textContent(),
    shownPartial: await shown.getAttribute('data-partial'),
    held: await held.textContent(),
    heldPartial: await held.getAttribute('data-partial'),
  };
}

describe('dashboard showing part of a truncated snapshot', () => {
  it('marks the key count and the counters partial until a snapshot that is whole, whatever notice comes between', async () => {
    let cutAt: number | undefined = 2;
    const live = await start(storeCuttingSnapshots(() => cutAt));
    proxy = await startTcpProxy(Number(new URL(live.httpUrl).port));
    const ana = await connect(live);
    for (const key of ['k:1', 'k:2', 'k:3']) await ana.acquire(key);
    const page = await openDashboard(live, new URL(proxy.url(live.httpUrl)).origin);
    await expect.poll(() => sizes(page), { timeout: 3000 }).toEqual({
      shown: '2+ keys (partial)',
      shownPartial: 'true',
      held: '2+',
      heldPartial: 'true',
    });
    expect(await page.locator('#count-held').getAttribute('data-value')).toBe('2');
    expect(await page.locator('#notice').textContent()).toContain('More than 10,000 keys are locked');

    // Another notice takes the notice's place; the marks stay.
    await page.locator('.lock-row[data-key="k:1"] button.revoke').click();
    await expect.poll(() => page.locator('#notice').textContent(), { timeout: 3000 }).toBe('Revoked 1 hold(s) of k:1.');
    // The row goes on the next frame.
    await expect.poll(() => sizes(page), { timeout: 3000 }).toEqual({
      shown: '1+ keys (partial)',
      shownPartial: 'true',
      held: '1+',
      heldPartial: 'true',
    });
    await page.locator('#filter').fill('k:2');
    await expect.poll(() => page.locator('#shown').textContent(), { timeout: 3000 }).toBe('1+ of 1+ keys (partial)');
    await page.locator('#filter').fill('');

    // The page's reconnect brings a new snapshot, whole this time.
    cutAt = undefined;
    proxy.cut();
    await expect.poll(() => sizes(page), { timeout: 5000 }).toEqual({
      shown: '2 keys',
      shownPartial: null,
      held: '2',
      heldPartial: null,
    });
    expect(await page.locator('#count-active-sessions').getAttribute('data-partial')).toBeNull();
  });

  it('says 10,000+ keys (partial) of a server holding 10,001, and still after a revoke from the page', { timeout: 60_000 }, async () => {
    const live = await start();
    // Ten sessions of 1,000 and one of 1, within the default limits, 250 requests at a time.
    await Promise.all(
      Array.from({ length: 11 }, async (_, h) => {
        const holder = await connect(live);
        const count = h === 10 ? 1 : 1000;
        for (let from = 0; from < count; from += 250) {
          const batch = Array.from({ length: Math.min(250, count - from) }, (_, b) => h * 1000 + from + b);
          await Promise.all(batch.map((n) => holder.acquire(`k:${String(n).padStart(5, '0')}`)));
        }
      }),
    );
    const page = await openDashboard(live);
    await expect.poll(() => sizes(page), { timeout: 10_000 }).toEqual({
      shown: '10,000+ keys (partial)',
      shownPartial: 'true',
      held: '10,000+',
      heldPartial: 'true',
    });
    await page.locator('.lock-row[data-key="k:00000"] button.revoke').click();
    await expect.poll(() => page.locator('#notice').textContent(), { timeout: 5000 }).toBe('Revoked 1 hold(s) of k:00000.');
    await expect.poll(() => sizes(page), { timeout: 3000 }).toEqual({
      shown: '9,999+ keys (partial)',
      shownPartial: 'true',
      held: '9,999+',
      heldPartial: 'true',
    });
  });
});
