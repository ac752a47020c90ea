import { createLockServer, createManualClock, type LockServer, type ManualClock } from '@lockwire/server';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { signToken } from '../../server/src/cli-token.js';
import { policyCloseOf, policyReconnectDelay, refusalOf } from '../../server/src/ui/access.js';
import { collectPageErrors, useChromium } from '../helpers/browser.js';

const SECRET = 'dashboard-access-test-secret-of-enough-length';
const chromium = useChromium();
let server: LockServer | undefined;
let pageErrors: string[] = [];

afterEach(async () => {
  await chromium.closeContext();
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
  const page = await (await chromium.context()).newPage();
  pageErrors = collectPageErrors(page);
  return page;
}

/**
 * Counts the page's WebSocket attempts and the close codes they ended with,
 * in `window.sockets`, and keeps the sockets in `window.pageSockets`.
 */
async function countSockets(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const Original = window.WebSocket;
    const sockets = { opened: 0, closes: [] as number[] };
    const pageSockets: WebSocket[] = [];
    Object.assign(window, { sockets, pageSockets });
    window.WebSocket = class extends Original {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        sockets.opened++;
        pageSockets.push(this);
        this.addEventListener('close', (event) => sockets.closes.push(event.code));
      }
    };
  });
}

const sockets = (page: Page) =>
  page.evaluate(() => (window as unknown as { sockets: { opened: number; closes: number[] } }).sockets);

/**
 * Sends `frames` pings on the page's newest socket at once, as a page gone
 * wild would. Their ids are strings, which the page's client never uses, so
 * it ignores the answers.
 */
async function flood(page: Page, frames: number): Promise<void> {
  await page.evaluate((frames) => {
    const socket = (window as unknown as { pageSockets: WebSocket[] }).pageSockets.at(-1);
    for (let i = 0; i < frames; i++) socket?.send(JSON.stringify({ op: 'ping', id: `flood-${i}` }));
  }, frames);
}

/**
 * A server without auth whose clock moves only when the test advances it, so
 * its rate limiter never refills: past the page's own few frames, a burst of
 * 20 leaves a flood of 200 refused long enough (100 refusals) to be abuse.
 */
async function openServer(): Promise<LockServer> {
  server = await createLockServer({ port: 0, clock: createManualClock(Date.now()), limits: { rateBurst: 20 } });
  return server;
}

/**
 * A page at `path` of an auth server ({@link authServer}), opened with a
 * token good for 60 s, counting its sockets, on a clock installed at load and
 * paused a second after `ready` showed; then the server's clock passes the
 * token's expiry, the server closes the page with 1008 and it shows refused.
 */
async function expiredTokenPage(path: string, ready: string): Promise<Page> {
  const clock = createManualClock(Date.now());
  const live = await authServer(clock);
  const page = await newPage();
  await countSockets(page);
  await page.clock.install();
  const url = new URL(path, live.httpUrl);
  url.searchParams.set('access_token', await token(clock, 60));
  await page.goto(url.toString());
  await page.locator(ready).waitFor({ timeout: 5000 });
  // From here on the page's timers, its reconnect delay among them, run only when the test runs them.
  await page.clock.pauseAt(Date.now() + 1000);
  clock.advance(61_000);
  await page.locator('#conn-state[data-state="refused"]').waitFor({ timeout: 5000 });
  return page;
}

/**
 * A page at `path` of an auth server, live (`ready` showed); then the server
 * stops and another takes its port with another secret, so the page's
 * token is refused (401) on every attempt to reconnect.
 */
async function tokenRefusedAfterRestart(path: string, ready: string): Promise<Page> {
  const clock = createManualClock(Date.now());
  const live = await authServer(clock);
  const page = await newPage();
  const url = new URL(path, live.httpUrl);
  url.searchParams.set('access_token', await token(clock));
  await page.goto(url.toString());
  await page.locator(ready).waitFor({ timeout: 5000 });
  const port = live.port;
  await live.close();
  server = await createLockServer({ port, auth: { secret: `${SECRET}-rotated` }, clock });
  return page;
}

/**
 * A page at `path` of a server without auth ({@link openServer}), counting
 * its sockets, on a clock installed at load and paused a second after
 * `ready` showed; then flooded with 200 frames until the server closed it
 * for sending too fast and it shows disconnected.
 */
async function floodedPage(path: string, ready: string): Promise<Page> {
  const live = await openServer();
  const tab = await newPage();
  await countSockets(tab);
  await tab.clock.install();
  await tab.goto(`${live.httpUrl}${path}`);
  await tab.locator(ready).waitFor({ timeout: 5000 });
  await tab.clock.pauseAt(Date.now() + 1000);
  await flood(tab, 200);
  await tab.locator('#conn-state[data-state="disconnected"]').waitFor({ timeout: 5000 });
  return tab;
}

/**
 * Checks that `page`, closed for its conduct on its only socket, has not
 * reconnected 3.5 s on (a drop's backoff would have: 0.5 s, with jitter;
 * this one waits at least 3.75 s) and, 3 s later, has reconnected and shows
 * `ready` again.
 */
async function reconnectsAfterConductDelay(page: Page, ready: string): Promise<void> {
  await page.clock.runFor(3500);
  expect(await sockets(page)).toEqual({ opened: 1, closes: [1008] });
  await page.clock.runFor(3000);
  await page.locator(ready).waitFor({ timeout: 5000 });
  expect((await sockets(page)).opened).toBe(2);
}

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
    const page = await expiredTokenPage('/', '#conn-state[data-state="live"]');
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

  it('stops reconnecting and says so when the server back after a drop refuses its token with 401', async () => {
    const page = await tokenRefusedAfterRestart('/', '#conn-state[data-state="live"]');
    await page.locator('#conn-state[data-state="refused"]').waitFor({ timeout: 10_000 });
    expect(await page.locator('#notice').textContent()).toBe(
      'Access refused (401): the token expired or is not valid. Reopen the page with a new token.',
    );
  });
});

describe('editor demo with auth on', () => {
  it('stops reconnecting and says so when the server back after a drop refuses its token with 401', async () => {
    const page = await tokenRefusedAfterRestart('/demo/editor?doc=auth&user=ana', '#who[data-role="editing"]');
    await page.locator('#conn-state[data-state="refused"]').waitFor({ timeout: 10_000 });
    expect(await page.locator('#who').textContent()).toBe(
      'Access refused (401): the token expired or is not valid. Reopen the page with a new token.',
    );
    expect(await page.locator('#text').isEditable()).toBe(false);
  });

  it('stops reconnecting and says the token expired when the server closes it with 1008', async () => {
    const page = await expiredTokenPage('/demo/editor?doc=auth&user=ana', '#who[data-role="editing"]');
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
    // The client's keepalive pings not answered yet, by id.
    const pings = new Set<string>();
    let allAnswered: (() => void) | null = null;
    page.on('websocket', (socket) => {
      socket.on('framesent', ({ payload }) => {
        const text = String(payload);
        if (text.includes('"op":"acquire"')) acquires++;
        if (text.includes('"op":"ping"')) pings.add(String((JSON.parse(text) as { id: unknown }).id));
      });
      socket.on('framereceived', ({ payload }) => {
        const message = JSON.parse(String(payload)) as { type?: unknown; id?: unknown };
        if (message.type === 'reply' && pings.delete(String(message.id)) && pings.size === 0) allAnswered?.();
      });
    });
    const pingsAnswered = () =>
      pings.size === 0
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`keepalive pings ${[...pings].join(', ')} unanswered for 5 s`)), 5000);
            allAnswered = () => {
              clearTimeout(timer);
              resolve();
            };
          });
    await page.clock.install();
    await page.clock.pauseAt(Date.now() + 1000);
    await page.goto(`${live.httpUrl}/demo/editor?doc=locked&user=ana&access_token=${encodeURIComponent(readOnly)}`);
    await page.locator('#who[data-refused="forbidden"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#who').textContent()).toBe(
      'Read-only: you may not edit doc:locked (forbidden: the token does not allow this user to edit it).',
    );
    expect(await page.locator('#text').isEditable()).toBe(false);
    // Thirty seconds in steps of one, the page reading what the server sent in between: at once, the
    // client's keepalive would find its ping unanswered (nothing is read while the clock jumps). Each
    // step waits for the answers of the pings sent so far, which a busy machine may deliver later than
    // the page's clock would otherwise run.
    for (let second = 0; second < 30; second++) {
      await page.clock.runFor(1000);
      await pingsAnswered();
    }
    expect(acquires).toBe(1);
    expect(await page.locator('#conn-state').getAttribute('data-state')).toBe('live');
  });
});

const page = (search: string) => ({ search }) as Location;
const serverClose = (reason: string) => ({ code: 1008, reason, byClient: false });

describe('how a page takes a close with 1008', () => {
  it('takes a close for rate-limit abuse for its conduct, not a refused token, with or without a token', () => {
    for (const location of [page('?'), page('?access_token=abc')]) {
      expect(refusalOf(serverClose('rate limit exceeded'), location)).toBeUndefined();
      expect(policyCloseOf(serverClose('rate limit exceeded'))).toBe('Closed for sending too fast (1008: rate limit exceeded).');
    }
  });

  it('takes a close for expired or invalid credentials as a refused token, and never as conduct', () => {
    expect(refusalOf(serverClose('credentials expired'), page('?access_token=abc'))).toBe(
      'Access refused (1008: credentials expired): the token expired or is not valid. Reopen the page with a new token.',
    );
    expect(refusalOf(serverClose('invalid token'), page('?access_token=abc'))).toContain('the token expired or is not valid');
    expect(policyCloseOf(serverClose('credentials expired'))).toBeUndefined();
  });

  it('takes a 1008 with another reason, or none, as conduct: the page reconnects and is not told it needs a token', () => {
    for (const reason of ['', 'going too far']) {
      expect(refusalOf(serverClose(reason), page('?'))).toBeUndefined();
    }
    expect(policyCloseOf(serverClose(''))).toBe('Closed by the server (1008).');
    expect(policyCloseOf(serverClose('going too far'))).toBe('Closed by the server (1008: going too far).');
  });

  it('ignores a 1008 the page sent itself, and every other close code', () => {
    expect(policyCloseOf({ code: 1008, reason: 'rate limit exceeded', byClient: true })).toBeUndefined();
    expect(refusalOf({ code: 1008, reason: 'credentials expired', byClient: true }, page('?access_token=abc'))).toBeUndefined();
    expect(policyCloseOf({ code: 1006, reason: '', byClient: false })).toBeUndefined();
  });

  it('waits 5 s after a close for conduct, doubling to 60 s, within 25 % jitter', () => {
    const bounds = [0, 1, 2, 3, 4, 5, 10].map((closes) => {
      const delays = Array.from({ length: 200 }, () => policyReconnectDelay(closes));
      return [Math.min(...delays), Math.max(...delays)];
    });
    const expected = [5000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000];
    bounds.forEach(([min, max], i) => {
      const base = expected[i] ?? 0;
      expect(min).toBeGreaterThanOrEqual(base * 0.75);
      expect(max).toBeLessThanOrEqual(base * 1.25);
    });
  });
});

describe('a page closed with 1008 for sending too fast, on a server without auth', () => {
  it('the dashboard says it was closed for sending too fast, never that it needs a token, and reconnects after about 5 s', async () => {
    const tab = await floodedPage('/', '#conn-state[data-state="live"]');
    expect(await tab.locator('#notice').textContent()).toMatch(
      /^Closed for sending too fast \(1008: rate limit exceeded\)\. Reconnecting in \d\.\ds\.$/,
    );
    expect(await tab.locator('body').innerText()).not.toMatch(/token|Access refused/);
    await reconnectsAfterConductDelay(tab, '#conn-state[data-state="live"]');
  });

  it('the editor says it was closed for sending too fast, never that it needs a token, and edits again after reconnecting', async () => {
    const tab = await floodedPage('/demo/editor?doc=flood&user=ana', '#who[data-role="editing"]');
    expect(await tab.locator('#who').textContent()).toMatch(
      /^Closed for sending too fast \(1008: rate limit exceeded\)\. Reconnecting in \d\.\ds\.$/,
    );
    expect(await tab.locator('body').innerText()).not.toMatch(/token|Access refused/);
    expect(await tab.locator('#text').isEditable()).toBe(false);
    await reconnectsAfterConductDelay(tab, '#who[data-role="editing"]');
  });
});

describe('dashboard on a server with an Origin allow-list (--allow-origin) of other sites', () => {
  it('connects from a page the server serves itself, whose origin is not on the list', async () => {
    server = await createLockServer({ port: 0, allowOrigins: ['https://app.example.com'] });
    const page = await newPage();
    await page.goto(`${server.httpUrl}/`);
    await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#notice').textContent()).not.toMatch(/Cannot reach|refused/);
  });

  it('says its origin is refused (403) and stops reconnecting when reached by a name the server does not take for its own', async () => {
    // Without auth a page reached by a name could be another site's pointed at the server: it must be listed.
    server = await createLockServer({ port: 0, allowOrigins: ['https://app.example.com'] });
    const page = await newPage();
    await countSockets(page);
    await page.clock.install();
    await page.clock.pauseAt(Date.now() + 1000);
    const origin = `http://locks.localhost:${server.port}`;
    await page.goto(`${origin}/`);
    await page.locator('#conn-state[data-state="refused"]').waitFor({ timeout: 5000 });
    expect(await page.locator('#notice').textContent()).toBe(
      `Access refused (403): the server does not let pages of ${origin} connect. Open this page at an address the server takes for its own, or add ${origin} to its --allow-origin list.`,
    );
    expect((await socketsAfterBackoff(page)).opened).toBe(1);
  });
});
