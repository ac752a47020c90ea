import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { LockClient } from '@lockwire/client';
import { createLockServer, type LockServer } from '@lockwire/server';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { collectPageErrors, launchChromium, uiDistPath } from '../helpers/browser.js';

/** Upper bound on the gzipped browser client, so growth is a decision rather than an accident. */
const MAX_CLIENT_GZIP_BYTES = 30 * 1024;

interface Metafile {
  inputs: Record<string, unknown>;
  outputs: Record<string, { imports: { path: string; external?: boolean }[] }>;
}

const BLANK_PAGE = `<!doctype html><title>blank</title><link rel="icon" href="data:,">
<script type="module">import * as lockwire from '/ui/lockwire-client.js'; window.lockwire = lockwire;</script>`;

/** What the page's `window` holds: the bundle's exports, and what a test keeps between evaluations. */
interface BundleWindow {
  lockwire: typeof import('@lockwire/client');
  held?: { client: LockClient; lease: { release(): Promise<void> } | null };
}

let browser: Browser;
let server: LockServer;
let page: Page;
let pageErrors: string[];
let observer: LockClient;

beforeAll(async () => {
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
});

beforeEach(async () => {
  server = await createLockServer({ port: 0 });
  observer = await LockClient.connect(server.url);
  page = await browser.newPage();
  pageErrors = collectPageErrors(page);
  // A blank page on the server's origin that loads nothing but the bundle. Its
  // document comes from the server itself (a route-fulfilled page would count
  // as a public origin, which Chromium's local network checks keep off loopback).
  await page.goto(`${server.httpUrl}/healthz`);
  await page.setContent(BLANK_PAGE);
  await page.waitForFunction(() => 'lockwire' in window, undefined, { timeout: 5000 });
});

afterEach(async () => {
  await page.close();
  await observer.close();
  await server.close();
  expect(pageErrors).toEqual([]);
});

describe('browser client bundle', () => {
  it('acquires and releases a lock against the real server from a blank page', async () => {
    const held = await page.evaluate(async (wsUrl) => {
      const page = window as unknown as BundleWindow;
      const client = await page.lockwire.LockClient.connect(wsUrl);
      const lease = await client.acquire('bundle:doc', { meta: { from: 'chromium' } });
      page.held = { client, lease };
      return { session: client.session, token: lease?.token, server: client.server };
    }, server.url);
    expect(held.server).toMatch(/^lockwire\//);

    const status = await observer.status('bundle:doc');
    expect(status.holders).toEqual([
      expect.objectContaining({ session: held.session, token: held.token, meta: { from: 'chromium' } }),
    ]);

    const afterRelease = await page.evaluate(async () => {
      const held = (window as unknown as BundleWindow).held;
      if (!held) throw new Error('the first evaluation kept nothing');
      const { client, lease } = held;
      await lease?.release();
      const status = await client.status('bundle:doc');
      await client.close();
      return { locked: status.locked, state: client.state };
    });
    expect(afterRelease).toEqual({ locked: false, state: 'closed' });
    expect((await observer.status('bundle:doc')).locked).toBe(false);
  });

  it('is granted by push in the page when a Node holder releases', async () => {
    const lease = await observer.acquire('bundle:queue');
    const granted = page.evaluate(async (wsUrl) => {
      const client = await (window as unknown as BundleWindow).lockwire.LockClient.connect(wsUrl);
      let position = 0;
      const waiting = await client.acquire('bundle:queue', {
        onQueued: (place) => {
          position = place;
        },
      });
      const token = waiting?.token;
      await client.close();
      return { position, token };
    }, server.url);
    await expect.poll(async () => (await observer.status('bundle:queue')).queue.length).toBe(1);
    await lease?.release();
    const result = await granted;
    expect(result.position).toBe(1);
    expect(result.token).toBeGreaterThan(lease?.token ?? Number.POSITIVE_INFINITY);
  });

  it('imports nothing Node-only and nothing from outside the bundle', () => {
    const meta = JSON.parse(readFileSync(uiDistPath('lockwire-client.meta.json'), 'utf8')) as Metafile;
    const inputs = Object.keys(meta.inputs);
    expect(inputs.some((input) => input.startsWith('client/src/'))).toBe(true);
    expect(inputs.filter((input) => /node_modules\/ws\/|^node:|client\/src\/node\.ts$/.test(input))).toEqual([]);
    for (const output of Object.values(meta.outputs)) expect(output.imports).toEqual([]);
    const code = readFileSync(uiDistPath('lockwire-client.js'), 'utf8');
    expect(code).not.toMatch(/\brequire\(|from\s*["'](?:ws|node:)/);
    expect(gzipSync(code).byteLength).toBeLessThan(MAX_CLIENT_GZIP_BYTES);
  });

  it('serves the pages and scripts with their content types and revalidating cache headers', async () => {
    const script = await fetch(`${server.httpUrl}/ui/lockwire-client.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(script.headers.get('cache-control')).toBe('no-cache');
    const etag = script.headers.get('etag');
    expect(etag).toMatch(/^"[\w-]+"$/);
    await script.arrayBuffer();
    const again = await fetch(`${server.httpUrl}/ui/lockwire-client.js`, { headers: { 'if-none-match': etag ?? '' } });
    expect(again.status).toBe(304);

    for (const [path, type] of [
      ['/', 'text/html; charset=utf-8'],
      ['/demo/editor', 'text/html; charset=utf-8'],
      ['/ui/ui.css', 'text/css; charset=utf-8'],
      ['/ui/dashboard.js', 'text/javascript; charset=utf-8'],
    ] as const) {
      const res = await fetch(`${server.httpUrl}${path}`);
      expect([path, res.status, res.headers.get('content-type')]).toEqual([path, 200, type]);
      await res.arrayBuffer();
    }
    for (const path of ['/ui/missing.js', '/ui/lockwire-client.meta.json', '/ui/%2e%2e%2fpackage.json']) {
      const res = await fetch(`${server.httpUrl}${path}`);
      expect([path, res.status]).toEqual([path, 404]);
      await res.arrayBuffer();
    }
    const post = await fetch(`${server.httpUrl}/`, { method: 'POST' });
    expect(post.status).toBe(405);
  });
});
