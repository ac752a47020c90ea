/**
 * Pages that leave by navigating, in Chromium with its back/forward cache
 * on, as users' browsers have it: the page is frozen with its sockets
 * rather than unloaded (`pagehide` with `persisted: true`), and going back
 * shows it again (`pageshow` with `persisted: true`) instead of loading it
 * anew. The page's locks must go to the next waiter as it leaves, with
 * session grace off and on, and a page shown again must come back as a new
 * session that knows it lost them. The server's clock never moves, so
 * nothing but a close ends a session's grace.
 */
import { LockClient } from '@lockwire/client';
import { createLockServer, createManualClock, type LockServer } from '@lockwire/server';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { collectPageErrors, useChromium } from '../helpers/browser.js';
import { comeBackFromCache, leaveIntoCache, noteTransitions, openClientPage, transitions } from '../helpers/page-history.js';

const chromium = useChromium({ backForwardCache: true });
let server: LockServer | undefined;
let pageErrors: string[] = [];
const clients: LockClient[] = [];

afterEach(async () => {
  await chromium.closeContext();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await server?.close();
  server = undefined;
  expect(pageErrors).toEqual([]);
  pageErrors = [];
});

async function start(sessionGrace: number): Promise<LockServer> {
  server = await createLockServer({ port: 0, heartbeatInterval: 0, clock: createManualClock(Date.now()), sessionGrace });
  return server;
}

async function connect(live: LockServer): Promise<LockClient> {
  const client = await LockClient.connect(live.url);
  clients.push(client);
  return client;
}

/** A new page that notes its transitions, whose errors count against the test once it closes. */
async function newPage(): Promise<Page> {
  const page = await (await chromium.context()).newPage();
  const errors = collectPageErrors(page);
  page.on('close', () => pageErrors.push(...errors));
  await noteTransitions(page);
  return page;
}

const who = (page: Page, role: string) => page.locator(`#who[data-role="${role}"]`);

for (const sessionGrace of [0, 60_000]) {
  describe(`editor demo, session grace ${sessionGrace} ms`, () => {
    it('hands the document to the waiting tab when the editing tab navigates away, and queues the tab again behind it when it comes back', async () => {
      const live = await start(sessionGrace);
      const first = await newPage();
      await first.goto(`${live.httpUrl}/demo/editor?doc=bf&user=ana`);
      await who(first, 'editing').waitFor({ timeout: 5000 });
      const second = await newPage();
      await second.goto(`${live.httpUrl}/demo/editor?doc=bf&user=bo`);
      await who(second, 'waiting').waitFor({ timeout: 5000 });
      const from = await leaveIntoCache(first, live.httpUrl);
      await who(second, 'editing').waitFor({ timeout: 3000 });
      const observer = await connect(live);
      expect((await observer.status('doc:bf')).holders.map((holder) => holder.meta?.user)).toEqual(['bo']);
      await comeBackFromCache(first, from);
      await who(first, 'waiting').waitFor({ timeout: 5000 });
      expect(await first.locator('#conn-state').getAttribute('data-state')).toBe('live');
      expect(await first.locator('#who').textContent()).toContain('user=bo');
      expect(await first.locator('#text').isEditable()).toBe(false);
      const status = await observer.status('doc:bf');
      expect(status.holders.map((holder) => holder.meta?.user)).toEqual(['bo']);
      expect(status.queue.map((waiter) => waiter.meta?.user)).toEqual(['ana']);
      // The page left no session behind: its two tabs and the observer.
      expect(live.sessionCount()).toBe(3);
    });
  });

  describe(`browser client, session grace ${sessionGrace} ms`, () => {
    it('ends its session as the page navigates away, so its locks go to their waiters, and comes back as a new session that lost them', async () => {
      const live = await start(sessionGrace);
      const observer = await connect(live);
      await observer.acquire('bf:taken');
      const page = await newPage();
      await openClientPage(page, live.httpUrl);
      const before = await page.evaluate(async (url) => {
        const { LockClient: Client } = (window as unknown as { lockwire: typeof import('@lockwire/client') }).lockwire;
        const client = await Client.connect(url);
        const seen: Record<string, unknown> = { resyncs: [], reconnects: [] };
        Object.assign(window, { client, seen });
        const settled = (promise: Promise<unknown>, name: string) =>
          promise.then(
            () => (seen[name] = 'resolved'),
            (error: { code?: string; close?: { code: number; reason: string } }) => (seen[name] = [error.code, error.close?.code, error.close?.reason]),
          );
        const lease = await client.acquire('bf:held');
        lease?.signal.addEventListener('abort', () => {
          const reason = lease.signal.reason as { code?: string; close?: { code: number; reason: string } };
          seen.lease = [reason.code, reason.close?.code, reason.close?.reason];
        });
        void settled(client.acquire('bf:taken'), 'queued');
        await client.watch('bf:', () => undefined, {
          onResync: (snapshot) => (seen.resyncs as unknown[]).push(snapshot.locks.map((lock) => lock.key)),
        });
        let granted: () => void = () => undefined;
        const webLockHeld = new Promise<void>((resolve) => (granted = resolve));
        void settled(
          client.locks.request('bf:web', () => {
            granted();
            return new Promise(() => undefined);
          }),
          'webLock',
        );
        await webLockHeld;
        client.on('reconnect', ({ resumed }) => (seen.reconnects as unknown[]).push(resumed));
        return client.session;
      }, live.url);
      await expect.poll(async () => (await observer.status('bf:taken')).queue.length, { timeout: 3000 }).toBe(1);
      const waiting = observer.acquire('bf:held');
      waiting.catch(() => undefined);
      await expect.poll(async () => (await observer.status('bf:held')).queue.length, { timeout: 3000 }).toBe(1);

      const from = await leaveIntoCache(page, live.httpUrl);
      // The page is frozen in the cache: its socket closed as it left, or the server would still hold its locks.
      const holders = async (key: string) => (await observer.status(key)).holders.map((holder) => holder.session);
      await expect.poll(() => holders('bf:held'), { timeout: 3000 }).toEqual([observer.session]);
      expect((await waiting)?.token).toBeGreaterThan(0);
      expect(await holders('bf:web')).toEqual([]);
      expect((await observer.status('bf:taken')).queue).toEqual([]);

      await comeBackFromCache(page, from);
      const seen = () => page.evaluate(() => (window as unknown as { seen: Record<string, unknown> }).seen);
      const lost = ['connection_lost', 1000, 'page left'];
      // The watch's resync is the last of these: it waits for the new session's answer to the watch.
      await expect
        .poll(seen, { timeout: 5000 })
        .toEqual({ lease: lost, queued: lost, webLock: lost, reconnects: [false], resyncs: [['bf:held', 'bf:taken']] });
      const after = await page.evaluate(() => {
        const { client } = window as unknown as { client: LockClient };
        return { session: client.session, state: client.state, leases: [...client.leases.keys()] };
      });
      expect(after.session).not.toBe(before);
      expect(after).toMatchObject({ state: 'open', leases: [] });
      // The new session takes the names the old one had, once free, through each face.
      const again = await page.evaluate(async () => {
        const { client } = window as unknown as { client: LockClient };
        const webLock = await client.locks.request('bf:web', { ifAvailable: true }, (lock) => lock !== null);
        const lease = await client.acquire('bf:web-after', { acquireTimeout: 0 });
        return { webLock, lease: lease !== null };
      });
      expect(again).toEqual({ webLock: true, lease: true });
      expect(live.sessionCount()).toBe(2);
    });
  });

  describe(`dashboard, session grace ${sessionGrace} ms`, () => {
    it('ends its session as it navigates away, and shows the locks taken meanwhile when it comes back', async () => {
      const live = await start(sessionGrace);
      const page = await newPage();
      await page.goto(`${live.httpUrl}/`);
      await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 5000 });
      expect(live.sessionCount()).toBe(1);
      const from = await leaveIntoCache(page, live.httpUrl);
      await expect.poll(() => live.sessionCount(), { timeout: 3000 }).toBe(0);
      const ana = await connect(live);
      await ana.acquire('while:away', { meta: { user: 'ana' } });
      await comeBackFromCache(page, from);
      await page.locator('.lock-row[data-key="while:away"]').waitFor({ timeout: 5000 });
      expect(await page.locator('#conn-state').getAttribute('data-state')).toBe('live');
      // A lock taken after it came back shows too: it watches again.
      await ana.acquire('after:back');
      await page.locator('.lock-row[data-key="after:back"]').waitFor({ timeout: 5000 });
      expect(live.sessionCount()).toBe(2);
    });
  });

  describe(`browser client on a page the cache does not keep, session grace ${sessionGrace} ms`, () => {
    it('ends its session as the page navigates away, so its lock goes to the waiter', async () => {
      const live = await start(sessionGrace);
      const observer = await connect(live);
      const page = await newPage();
      await openClientPage(page, live.httpUrl, '/healthz');
      await page.evaluate(async (url) => {
        const { LockClient: Client } = (window as unknown as { lockwire: typeof import('@lockwire/client') }).lockwire;
        const client = await Client.connect(url);
        await client.acquire('unkept:held');
      }, live.url);
      const waiting = observer.acquire('unkept:held');
      waiting.catch(() => undefined);
      await expect.poll(async () => (await observer.status('unkept:held')).queue.length, { timeout: 3000 }).toBe(1);
      await page.goto(`${live.httpUrl}/v1/locks`);
      expect(await transitions(page)).toContain('pagehide /healthz');
      await expect
        .poll(async () => (await observer.status('unkept:held')).holders.map((holder) => holder.session), { timeout: 3000 })
        .toEqual([observer.session]);
      expect((await waiting)?.token).toBeGreaterThan(0);
      expect(live.sessionCount()).toBe(1);
    });
  });
}
