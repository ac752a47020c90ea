/**
 * The dashboard and the editor demo through a dropped connection, with
 * session grace on: the page's client reconnects and resumes its session,
 * so an editor tab keeps the document it held, a tab refused the document
 * for good still says why, and no stale session of a page lingers on the
 * server. The server's clock never moves, so nothing
 * but a resume or a close ends a session's grace. Chromium keeps its
 * back/forward cache on, as users' browsers do; pages that navigate away
 * and back are tested in back-forward-cache.test.ts.
 */
import { LockClient } from '@lockwire/client';
import { createLockServer, createManualClock, type LockServer } from '@lockwire/server';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { signToken } from '../../server/src/cli-token.js';
import { collectPageErrors, launchChromium } from '../helpers/browser.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const GRACE_MS = 60_000;
const SECRET = 'page-resume-test-secret-of-enough-length';

let browser: Browser;
let server: LockServer;
let context: BrowserContext;
let pageErrors: string[];
const clients: LockClient[] = [];
const proxies: TcpProxy[] = [];

async function connect(): Promise<LockClient> {
  const client = await LockClient.connect(server.url);
  clients.push(client);
  return client;
}

/** A proxy in front of the server, for one page's connections to be cut. */
async function proxy(): Promise<TcpProxy> {
  const started = await startTcpProxy(server.port);
  proxies.push(started);
  return started;
}

/** Opens `path` of the server, through `via` when given; the page's errors count against the test once it closes. */
async function open(path: string, via?: TcpProxy): Promise<Page> {
  const page = await context.newPage();
  const errors = collectPageErrors(page);
  page.on('close', () => pageErrors.push(...errors));
  await page.goto(`http://127.0.0.1:${via?.port ?? server.port}${path}`);
  return page;
}

const who = (page: Page, role: string) => page.locator(`#who[data-role="${role}"]`);
const connState = (page: Page, state: string) => page.locator(`#conn-state[data-state="${state}"]`);

/** Cuts every connection through `via` and waits until `page` showed the drop and is live again. */
async function blip(page: Page, via: TcpProxy): Promise<void> {
  via.cut();
  await connState(page, 'disconnected').waitFor({ timeout: 5000 });
  await connState(page, 'live').waitFor({ timeout: 10_000 });
}

beforeAll(async () => {
  browser = await launchChromium({ backForwardCache: true });
});

afterAll(async () => {
  await browser?.close();
});

/** Starts the test's server with session grace on, and auth with `SECRET` when `auth`. */
async function startServer(auth = false): Promise<void> {
  server = await createLockServer({
    port: 0,
    heartbeatInterval: 0,
    clock: createManualClock(Date.now()),
    sessionGrace: GRACE_MS,
    ...(auth ? { auth: { secret: SECRET } } : {}),
  });
}

beforeEach(async () => {
  context = await browser.newContext();
  pageErrors = [];
});

afterEach(async () => {
  await context.close();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await Promise.all(proxies.splice(0).map((started) => started.close()));
  await server.close();
  // A cut connection is the browser's own console line, not an error of the page's script.
  expect(pageErrors.filter((line) => !/WebSocket connection to|ERR_CONNECTION/.test(line))).toEqual([]);
});

describe('editor demo with session grace on', () => {
  beforeEach(() => startServer());

  it('goes back to editing after its connection drops for a moment, not waiting behind its own old session', async () => {
    const via = await proxy();
    const page = await open('/demo/editor?doc=blip&user=ana', via);
    await who(page, 'editing').waitFor({ timeout: 5000 });
    const before = await connect().then((observer) => observer.status('doc:blip'));
    await blip(page, via);
    await who(page, 'editing').waitFor({ timeout: 5000 });
    expect(await page.locator('#who').textContent()).toContain('You are editing doc:blip');
    expect(await page.locator('#text').isEditable()).toBe(true);
    // The same session holds it with the same token: the hold was kept, not taken again.
    const after = await connect().then((observer) => observer.status('doc:blip'));
    expect(after.holders.map((holder) => [holder.session, holder.token])).toEqual(
      before.holders.map((holder) => [holder.session, holder.token]),
    );
    expect(after.queue).toEqual([]);
    expect(server.sessionCount()).toBe(3);
  });

  it('is read-only while its connection is down', async () => {
    const via = await proxy();
    const page = await open('/demo/editor?doc=down&user=ana', via);
    await who(page, 'editing').waitFor({ timeout: 5000 });
    via.refuse();
    await who(page, 'offline').waitFor({ timeout: 5000 });
    expect(await page.locator('#text').isEditable()).toBe(false);
    via.resume();
    await who(page, 'editing').waitFor({ timeout: 10_000 });
  });

  it('queues again after a drop while it waited, behind the tab still editing', async () => {
    await open('/demo/editor?doc=line&user=ana').then((page) => who(page, 'editing').waitFor({ timeout: 5000 }));
    const via = await proxy();
    const page = await open('/demo/editor?doc=line&user=bo', via);
    await who(page, 'waiting').waitFor({ timeout: 5000 });
    await blip(page, via);
    await who(page, 'waiting').waitFor({ timeout: 5000 });
    expect(await page.locator('#who').textContent()).toContain('user=ana');
    const observer = await connect();
    await expect.poll(async () => (await observer.status('doc:line')).queue.length, { timeout: 5000 }).toBe(1);
  });
});

describe('editor demo with session grace and auth on', () => {
  beforeEach(() => startServer(true));

  it('still says the user may not edit, and why, after its connection drops and the session resumes, without asking again', async () => {
    const viewer = await signToken({ sub: 'viewer', locks: [], watch: ['*'], steal: [], admin: [] }, { secret: SECRET, ttlSeconds: 600, now: Date.now() });
    const via = await proxy();
    const page = await context.newPage();
    const errors = collectPageErrors(page);
    page.on('close', () => pageErrors.push(...errors));
    let acquires = 0;
    page.on('websocket', (socket) =>
      socket.on('framesent', ({ payload }) => {
        if (String(payload).includes('"op":"acquire"')) acquires++;
      }),
    );
    await page.goto(`http://127.0.0.1:${via.port}/demo/editor?doc=ro&user=viewer&access_token=${encodeURIComponent(viewer)}`);
    await page.locator('#who[data-refused="forbidden"]').waitFor({ timeout: 5000 });
    const before = await page.locator('#who').textContent();
    expect(before).toBe('Read-only: you may not edit doc:ro (forbidden: the token does not allow this user to edit it).');
    await blip(page, via);
    expect(await page.locator('#who').getAttribute('data-refused')).toBe('forbidden');
    expect(await page.locator('#who').getAttribute('data-role')).toBe('readonly');
    expect(await page.locator('#who').textContent()).toBe(before);
    expect(await page.locator('#text').isEditable()).toBe(false);
    // The same token gets the same answer, so the resumed session does not ask for the document again.
    expect(acquires).toBe(1);
    expect(server.sessionCount()).toBe(1);
  });
});

describe('dashboard with session grace on', () => {
  beforeEach(() => startServer());

  it('resumes its session after its connection drops for a moment, leaving no second session on the server', async () => {
    const via = await proxy();
    const page = await open('/', via);
    await connState(page, 'live').waitFor({ timeout: 5000 });
    const name = await page.locator('#server-name').textContent();
    expect(server.sessionCount()).toBe(1);
    await blip(page, via);
    expect(await page.locator('#server-name').textContent()).toBe(name);
    expect(server.sessionCount()).toBe(1);
    // It watches again: a lock taken after the drop shows.
    const ana = await connect();
    await ana.acquire('after:blip');
    await page.locator('.lock-row[data-key="after:blip"]').waitFor({ timeout: 2000 });
  });
});
