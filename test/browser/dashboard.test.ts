import { LockClient } from '@lockwire/client';
import { createLockServer, createManualClock, type LockServer, type ManualClock } from '@lockwire/server';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { collectPageErrors, launchChromium, measurePng, saveResult } from '../helpers/browser.js';

let browser: Browser;
let server: LockServer;
let clock: ManualClock;
let page: Page;
let pageErrors: string[];
const clients: LockClient[] = [];

async function connect(): Promise<LockClient> {
  const client = await LockClient.connect(server.url);
  clients.push(client);
  return client;
}

/** Resolves as `promise` does; rejects with `what()` after `ms` (a bound on a wait, never a timing check). */
async function within(promise: Promise<void>, ms: number, what: () => string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what())), ms);
  });
  try {
    await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

const row = (key: string) => page.locator(`.lock-row[data-key="${key}"]`);
const logLine = (key: string, event: string) => page.locator(`#log .log-line[data-key="${key}"][data-event="${event}"]`);

async function openDashboard(path = '/'): Promise<void> {
  await page.goto(`${server.httpUrl}${path}`);
  await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 5000 });
}

beforeAll(async () => {
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
});

beforeEach(async () => {
  clock = createManualClock(Date.now());
  server = await createLockServer({ port: 0, clock });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  pageErrors = collectPageErrors(page);
});

afterEach(async () => {
  await page.close();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await server.close();
  expect(pageErrors).toEqual([]);
});

describe('dashboard', () => {
  it('shows a lock acquired by a Node client on the next frame after its event, with its holder meta and token', async () => {
    // The page's clock stands still until advanced: only a frame asked for by the event can draw the row, not the 1 s tick.
    // Paused a few seconds ahead: the installed clock runs until then, and a loaded machine may pass a
    // nearer point first (pausing in its past fails). Nothing is on the page yet to fire meanwhile.
    await page.clock.install({ time: clock.now() });
    await page.clock.pauseAt(clock.now() + 5_000);
    const frames: string[] = [];
    let heard: () => void = () => {};
    const eventHeard = new Promise<void>((resolve) => (heard = resolve));
    page.on('websocket', (socket) =>
      socket.on('framereceived', ({ payload }) => {
        const text = String(payload);
        frames.push(text);
        if (text.includes('"event":"acquired"') && text.includes('"key":"room:7"')) heard();
      }),
    );
    await openDashboard();
    // Draws the frame asked for on connecting; the next one must be asked for by the event.
    await page.clock.runFor(100);
    const ana = await connect();
    const lease = await ana.acquire('room:7', { meta: { user: 'ana', tab: 't1' } });
    await within(eventHeard, 5000, () => `the dashboard's socket got no acquired event for room:7: ${frames.join(' ')}`);
    expect(await row('room:7').count()).toBe(0);
    await page.clock.runFor(100);
    expect(await row('room:7').count()).toBe(1);
    const holders = await row('room:7').locator('.holders').textContent();
    expect(holders).toContain('user=ana tab=t1');
    expect(holders).toContain(`#${lease?.token}`);
    expect(await row('room:7').locator('.mode').textContent()).toBe('exclusive');
    expect(await logLine('room:7', 'acquired').count()).toBe(1);
    expect(await page.locator('#count-held').getAttribute('data-value')).toBe('1');
  });

  it('removes the row and logs the release when the holder releases', async () => {
    const ana = await connect();
    const lease = await ana.acquire('doc:1', { meta: { user: 'ana' } });
    await openDashboard();
    await row('doc:1').waitFor({ timeout: 2000 });
    await lease?.release();
    await logLine('doc:1', 'released').waitFor({ timeout: 2000 });
    await row('doc:1').waitFor({ state: 'detached', timeout: 2000 });
    await expect.poll(() => page.locator('#count-held').getAttribute('data-value')).toBe('0');
  });

  it('shows the expiry of a hold timeout and then the next holder from the queue', async () => {
    await openDashboard();
    const ana = await connect();
    const bo = await connect();
    await ana.acquire('job:nightly', { holdTimeout: 30_000, meta: { user: 'ana' } });
    const boLease = bo.acquire('job:nightly', { meta: { user: 'bo' } });
    await expect.poll(() => row('job:nightly').locator('.queue').textContent()).toContain('1: ');
    expect(await row('job:nightly').locator('.queue').textContent()).toContain('user=bo');
    // The expiry is learnt from `status`: events do not carry it.
    await expect.poll(() => row('job:nightly').locator('.expires-in').textContent()).toMatch(/^(29|30)s$/);
    clock.advance(30_000);
    await logLine('job:nightly', 'expired').waitFor({ timeout: 2000 });
    expect(await boLease).not.toBeNull();
    await expect.poll(() => row('job:nightly').locator('.holders').textContent()).toContain('user=bo');
    expect(await row('job:nightly').locator('.queue').textContent()).toBe('');
  });

  it('shows a steal: the stolen holder in the log and the thief in the row', async () => {
    await openDashboard();
    const ana = await connect();
    const eve = await connect();
    const lease = await ana.acquire('doc:steal', { meta: { user: 'ana' } });
    await row('doc:steal').waitFor({ timeout: 2000 });
    await eve.acquire('doc:steal', { steal: true, meta: { user: 'eve' } });
    await logLine('doc:steal', 'stolen').waitFor({ timeout: 2000 });
    expect(lease?.signal.aborted).toBe(true);
    await expect.poll(() => row('doc:steal').locator('.holders').textContent()).toContain('user=eve');
    const stolen = await logLine('doc:steal', 'stolen').textContent();
    expect(stolen).toContain('user=ana');
  });

  it('revokes a key from its row: the holder loses it as revoked and the row goes', async () => {
    await openDashboard();
    const ana = await connect();
    const lease = await ana.acquire('lease:revoke-me', { meta: { user: 'ana' } });
    await row('lease:revoke-me').waitFor({ timeout: 2000 });
    const lost = new Promise<unknown>((resolve) =>
      lease?.signal.addEventListener('abort', () => resolve(lease.signal.reason)),
    );
    await row('lease:revoke-me').locator('button.revoke').click();
    await logLine('lease:revoke-me', 'revoked').waitFor({ timeout: 2000 });
    await expect(lost).resolves.toMatchObject({ code: 'revoked' });
    expect(lease?.state).toBe('lost');
    await row('lease:revoke-me').waitFor({ state: 'detached', timeout: 2000 });
  });

  it('filters rows by key prefix and shows one key holders and queue in the details panel', async () => {
    const ana = await connect();
    const bo = await connect();
    await Promise.all(['doc:1', 'doc:2', 'room:1', 'room:2', 'room:3'].map((key) => ana.acquire(key)));
    const queued = bo.acquire('room:2', { meta: { user: 'bo' } }).catch(() => null);
    await openDashboard();
    await expect.poll(() => page.locator('.lock-row:not([hidden])').count()).toBe(5);
    await page.locator('#filter').fill('room:');
    await expect.poll(() => page.locator('.lock-row:not([hidden])').count()).toBe(3);
    expect(await page.locator('#shown').textContent()).toBe('3 of 5 keys');
    await row('room:2').click();
    await expect.poll(() => page.locator('#details h2').textContent()).toBe('room:2');
    await expect.poll(() => page.locator('#details ol.queue li').count()).toBe(1);
    expect(await page.locator('#details ol.queue li').textContent()).toContain('user=bo');
    expect(await page.locator('#details ol.holders li').textContent()).toContain(`session ${ana.session}`);
    await bo.close();
    expect(await queued).toBeNull();
  });

  it('holds the event log while paused and shows the newest lines on resume', async () => {
    await openDashboard();
    const ana = await connect();
    await ana.acquire('a:1');
    await logLine('a:1', 'acquired').waitFor({ timeout: 2000 });
    await page.locator('#pause').click();
    await ana.acquire('a:2');
    await expect.poll(() => page.locator('#log-status').textContent()).toBe('paused, 1 new');
    expect(await logLine('a:2', 'acquired').count()).toBe(0);
    await page.locator('#pause').click();
    await logLine('a:2', 'acquired').waitFor({ timeout: 2000 });
  });

  it('keeps the paused log newest first across a reconnect, the connection notes in their place among the events', async () => {
    await openDashboard();
    await page.locator('#pause').click();
    const ana = await LockClient.connect(server.url, { reconnect: false });
    await ana.acquire('before:drop');
    await expect.poll(() => page.locator('#log-status').textContent()).toBe('paused, 1 new');
    await ana.close(); // its release is the second event
    const port = server.port;
    await server.close();
    await page.locator('#conn-state[data-state="disconnected"]').waitFor({ timeout: 5000 });
    server = await createLockServer({ port, clock });
    await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 15_000 });
    const bo = await connect();
    await bo.acquire('after:drop');
    await expect.poll(() => page.locator('#log-status').textContent()).toBe('paused, 3 new');
    await page.locator('#pause').click();
    await logLine('after:drop', 'acquired').waitFor({ timeout: 2000 });
    const lines = await page.locator('#log .log-line').evaluateAll((items) =>
      items.map((item) => {
        const line = item as HTMLElement;
        if (line.dataset.key) return `${line.dataset.event} ${line.dataset.key}`;
        // A note: its text without the clock, and without the session it names.
        return (line.textContent ?? '').replace(/^\S+ /, '').split(' as ')[0];
      }),
    );
    expect(lines.slice(0, 5)).toEqual([
      'acquired after:drop',
      'connected',
      'disconnected',
      'released before:drop',
      'acquired before:drop',
    ]);
    // While the server was down the browser logged its refused connections; nothing else may have gone wrong.
    const unexpected = pageErrors.filter((line) => !/ERR_CONNECTION_REFUSED|WebSocket connection to/.test(line));
    pageErrors.splice(0, pageErrors.length, ...unexpected);
  });

  it('shows the connection drop and reconnects to a server back on the same port', async () => {
    const ana = await connect();
    await ana.acquire('before:restart');
    await openDashboard();
    await row('before:restart').waitFor({ timeout: 2000 });
    const port = server.port;
    await server.close();
    await page.locator('#conn-state[data-state="disconnected"]').waitFor({ timeout: 5000 });
    server = await createLockServer({ port, clock });
    const bo = await connect();
    await bo.acquire('after:restart');
    await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 15_000 });
    await row('after:restart').waitFor({ timeout: 2000 });
    expect(await row('before:restart').count()).toBe(0);
    // While the server was down the browser logged its refused connections; nothing else may have gone wrong.
    const unexpected = pageErrors.filter((line) => !/ERR_CONNECTION_REFUSED|WebSocket connection to/.test(line));
    pageErrors.splice(0, pageErrors.length, ...unexpected);
  });

  it('clears the rows and the counts while disconnected instead of showing holders the server may not have', async () => {
    const ana = await LockClient.connect(server.url, { reconnect: false });
    clients.push(ana);
    await ana.acquire('gone:1', { meta: { user: 'ana' } });
    await openDashboard();
    await row('gone:1').waitFor({ timeout: 2000 });
    await expect.poll(() => page.locator('#count-sessions').getAttribute('data-value'), { timeout: 5000 }).toBe('2');
    await server.close();
    await page.locator('#conn-state[data-state="disconnected"]').waitFor({ timeout: 5000 });
    await row('gone:1').waitFor({ state: 'detached', timeout: 2000 });
    const count = (id: string) => page.locator(`#${id}`).getAttribute('data-value');
    expect([await count('count-held'), await count('count-holders'), await count('count-active-sessions')]).toEqual([
      '0',
      '0',
      '0',
    ]);
    await expect.poll(() => page.locator('#count-sessions').textContent(), { timeout: 5000 }).toBe('–');
    // A fresh server for afterEach to close; the refused connections logged meanwhile are expected. The page
    // is left first, so no retry of it logs another one after they were set aside.
    server = await createLockServer({ port: 0, clock });
    await page.goto('about:blank');
    const unexpected = pageErrors.filter((line) => !/ERR_CONNECTION_REFUSED|WebSocket connection to/.test(line));
    pageErrors.splice(0, pageErrors.length, ...unexpected);
  });

  it('stops showing the sessions count once the server drains (503 without a count), rather than the last one as current', async () => {
    await server.close();
    server = await createLockServer({ port: 0, clock, drainDelay: 60_000 });
    await openDashboard();
    await expect.poll(() => page.locator('#count-sessions').getAttribute('data-value'), { timeout: 5000 }).toBe('1');
    const draining = server.close();
    await expect.poll(() => page.locator('#count-sessions').textContent(), { timeout: 5000 }).toBe('–');
    expect(await page.locator('#count-sessions').getAttribute('data-value')).toBeNull();
    clock.advance(60_000);
    await draining;
    // A fresh server for afterEach to close; the 503s and refused connections logged meanwhile are expected.
    // The page is left first, so no retry of it logs another one after they were set aside.
    server = await createLockServer({ port: 0, clock });
    await page.goto('about:blank');
    const unexpected = pageErrors.filter((line) => !/ERR_CONNECTION_REFUSED|WebSocket connection to|status of 503/.test(line));
    pageErrors.splice(0, pageErrors.length, ...unexpected);
  });

  it('shows the new expiry of a hold extended after its known expiry passed, though no event tells of an extend', async () => {
    await openDashboard();
    const ana = await connect();
    // The server's clock stands still, so the hold never expires there; the page's clock runs past it.
    const lease = await ana.acquire('ext:1', { holdTimeout: 1, meta: { user: 'ana' } });
    const expires = row('ext:1').locator('.expires-in');
    await expect.poll(() => expires.textContent(), { timeout: 3000 }).toBe('0.0s');
    await lease?.extend(60_000);
    await expect.poll(() => expires.textContent(), { timeout: 3000 }).toMatch(/^5\ds$/);
  });

  it('closes the connection of a failed attempt, so retrying leaves no session behind on the server', async () => {
    // Each attempt connects, then the server refuses its watch (the page sends it with a limit of -1).
    await page.addInitScript(() => {
      const send = WebSocket.prototype.send;
      WebSocket.prototype.send = function (this: WebSocket, data) {
        const text = typeof data === 'string' ? data.replace(/("op":"watch".*"limit":)\d+/, '$1-1') : data;
        send.call(this, text);
      };
    });
    await page.goto(`${server.httpUrl}/`);
    await expect.poll(() => page.locator('#notice').textContent(), { timeout: 5000 }).toContain('Cannot reach');
    expect(await page.locator('#conn-state').getAttribute('data-state')).not.toBe('live');
    await expect.poll(() => server.sessionCount(), { timeout: 3000 }).toBe(0);
  });

  it('renders a non-blank page, saved as a screenshot under test-results/', async () => {
    const ana = await connect();
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => ana.acquire(`shot:${String(i).padStart(2, '0')}`, { meta: { user: 'ana' } })),
    );
    await openDashboard();
    await expect.poll(() => page.locator('#count-held').getAttribute('data-value')).toBe('40');
    const png = await page.screenshot({ fullPage: true });
    saveResult('dashboard.png', png);
    const stats = await measurePng(page, png);
    const blankPage = await browser.newPage();
    const blank = await measurePng(page, await blankPage.screenshot());
    await blankPage.close();
    expect(blank.colours).toBe(1);
    expect(stats.colours).toBeGreaterThan(10);
    expect(stats.luminanceStdDev).toBeGreaterThan(10);
  });
});
