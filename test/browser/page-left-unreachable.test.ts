/**
 * A page that navigates away into the back/forward cache, with session
 * grace on, and is shown again while the server cannot be reached, in
 * Chromium with its cache on. The page's transport closed its connection
 * with 1000 as it left, which ended its session on the server at once: the
 * client, shown again, must know its locks are gone straight away, not
 * once a reconnect answers or the grace runs out. The page reaches the
 * server through a proxy that refuses new connections from before the page
 * leaves; the server's clock never moves.
 */
import { LockClient } from '@lockwire/client';
import { createLockServer, createManualClock, type LockServer } from '@lockwire/server';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { collectPageErrors, useChromium } from '../helpers/browser.js';
import { comeBackFromCache, leaveIntoCache, noteTransitions, openClientPage } from '../helpers/page-history.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

/** Longer than any test runs: were the client waiting for the grace, nothing it holds would end within the test. */
const GRACE_MS = 60_000;

const chromium = useChromium({ backForwardCache: true });
let server: LockServer | undefined;
let proxy: TcpProxy | undefined;
const clients: LockClient[] = [];
let pageErrors: string[] = [];

afterEach(async () => {
  await chromium.closeContext();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await proxy?.close();
  proxy = undefined;
  await server?.close();
  server = undefined;
  expect(pageErrors).toEqual([]);
  pageErrors = [];
});

/**
 * A new page that notes its transitions. Its errors count against the test
 * once it closes, but for Chromium's report of each connection attempt the
 * proxy refused, which the test asks for.
 */
async function newPage(): Promise<Page> {
  const page = await (await chromium.context()).newPage();
  const errors = collectPageErrors(page);
  // Chromium words a refused reconnect in several ways, depending on where the proxy cut it.
  const refused =
    /^console\.error: WebSocket connection to '.*' failed: (Error (during WebSocket handshake|in connection establishment): net::(ERR_CONNECTION_RESET|ERR_SOCKET_NOT_CONNECTED|ERR_CONNECTION_CLOSED|ERR_CONNECTION_REFUSED)|Connection closed before receiving a handshake response)$/;
  page.on('close', () => pageErrors.push(...errors.filter((error) => !refused.test(error))));
  await noteTransitions(page);
  return page;
}

/** What the page's client has seen, as recorded by the script `connectInPage` starts. */
interface Seen {
  lease?: unknown[];
  queued?: unknown[];
  webLock?: unknown[];
  reconnects: boolean[];
  state: string;
}

/**
 * Connects a client in `page` to `url`, takes `left:held`, queues for
 * `left:taken`, holds the Web Lock `left:web`, and records on `window.seen`
 * how each ends, with the code of the error and its close's code and reason.
 */
function connectInPage(page: Page, url: string): Promise<string> {
  return page.evaluate(async (url) => {
    const { LockClient: Client } = (window as unknown as { lockwire: typeof import('@lockwire/client') }).lockwire;
    const client = await Client.connect(url, { reconnect: { maxDelay: 500 } });
    const seen: Record<string, unknown> = { reconnects: [], state: client.state };
    Object.assign(window, { client, seen });
    type Ended = { code?: string; close?: { code: number; reason: string } };
    const ended = (error: Ended) => [error.code, error.close?.code, error.close?.reason];
    const settled = (promise: Promise<unknown>, name: string) =>
      promise.then(
        () => (seen[name] = 'resolved'),
        (error: Ended) => (seen[name] = ended(error)),
      );
    client.on('state', (state) => (seen.state = state));
    client.on('reconnect', ({ resumed }) => (seen.reconnects as boolean[]).push(resumed));
    const lease = await client.acquire('left:held');
    lease?.signal.addEventListener('abort', () => (seen.lease = ended(lease.signal.reason as Ended)));
    void settled(client.acquire('left:taken'), 'queued');
    let granted: () => void = () => undefined;
    const webLockHeld = new Promise<void>((resolve) => (granted = resolve));
    void settled(
      client.locks.request('left:web', () => {
        granted();
        return new Promise(() => undefined);
      }),
      'webLock',
    );
    await webLockHeld;
    return client.session;
  }, url);
}

describe('browser client shown again from the back/forward cache, session grace on', () => {
  it('loses its locks at once when it cannot reach the server, and reconnects as a new session once it can', async () => {
    const live = await createLockServer({ port: 0, heartbeatInterval: 0, clock: createManualClock(Date.now()), sessionGrace: GRACE_MS });
    server = live;
    const via = await startTcpProxy(live.port);
    proxy = via;
    const observer = await LockClient.connect(live.url);
    clients.push(observer);
    await observer.acquire('left:taken');
    const page = await newPage();
    await openClientPage(page, live.httpUrl);
    const before = await connectInPage(page, via.url(live.url));
    await expect.poll(async () => (await observer.status('left:taken')).queue.length, { timeout: 3000 }).toBe(1);
    // From now on the server cannot be reached; the page's open connection still can.
    via.block();
    const accepted = via.accepted;

    const from = await leaveIntoCache(page, live.httpUrl);
    // The server ended the page's session as it left: its locks are free, and its socket is closed.
    await expect.poll(async () => (await observer.status('left:held')).locked, { timeout: 3000 }).toBe(false);
    expect((await observer.status('left:web')).locked).toBe(false);
    await expect.poll(() => via.connectionCount(), { timeout: 3000 }).toBe(0);

    await comeBackFromCache(page, from);
    const seen = () => page.evaluate(() => (window as unknown as { seen: Seen }).seen);
    const lost = ['connection_lost', 1000, 'page left'];
    await expect.poll(seen, { timeout: 3000 }).toMatchObject({ lease: lost, queued: lost, webLock: lost, reconnects: [] });
    expect(['reconnecting', 'connecting']).toContain((await seen()).state);
    // It does try to reconnect, and is refused.
    await expect.poll(() => via.accepted, { timeout: 3000 }).toBeGreaterThan(accepted);
    expect((await seen()).reconnects).toEqual([]);
    expect(await page.evaluate(() => [...(window as unknown as { client: LockClient }).client.leases.keys()])).toEqual([]);

    via.unblock();
    await expect.poll(seen, { timeout: 5000 }).toMatchObject({ reconnects: [false], state: 'open' });
    const session = await page.evaluate(() => (window as unknown as { client: LockClient }).client.session);
    expect(session).not.toBe(before);
    expect(live.sessionCount()).toBe(2);
    expect((await observer.status('left:held')).locked).toBe(false);
  });
});
