import { join } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { LockClient } from '@lockwire/client';
import { createLockServer, type LockServer } from '@lockwire/server';
import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { collectPageErrors, launchChromium } from '../helpers/browser.js';
import { repoRoot } from '../helpers/lockwire-process.js';

/** The lockwire packages from their sources; React and react-dom from node_modules. */
const lockwireSources: Plugin = {
  name: 'lockwire-sources',
  setup(builder) {
    const sources: Record<string, string> = {
      '@lockwire/client/react': 'client/src/react/index.ts',
      '@lockwire/client': 'client/src/index.ts',
      '@lockwire/protocol': 'shared/src/index.ts',
    };
    builder.onResolve({ filter: /^@lockwire\// }, (args) => {
      const source = sources[args.path];
      return source ? { path: join(repoRoot, source) } : undefined;
    });
  },
};

interface ReactTestWindow {
  reactTest: {
    mount(name: string, url: string, key: string, auto?: boolean): Promise<string>;
    setAuto(name: string, auto: boolean): Promise<string[]>;
    mountPair(name: string, url: string, key: string): Promise<string>;
    unmount(name: string): void;
  };
}

let browser: Browser;
let pageScript: string;
let server: LockServer;
let observer: LockClient;
let page: Page;
let pageErrors: string[];

function mount(name: string, key: string, auto = true): Promise<string> {
  return page.evaluate(
    ([name, url, key, auto]) => (window as unknown as ReactTestWindow).reactTest.mount(name, url, key, auto),
    [name, server.url, key, auto] as const,
  );
}

function view(name: string): Locator {
  return page.locator(`#${name} .lock`);
}

async function expectAttributes(name: string, expected: Record<string, string | RegExp>): Promise<void> {
  for (const [attribute, value] of Object.entries(expected)) {
    await expect.poll(() => view(name).getAttribute(`data-${attribute}`), { timeout: 5000 }).toMatch(value);
  }
}

beforeAll(async () => {
  const bundled = await build({
    entryPoints: [join(repoRoot, 'test/browser/react-page.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    metafile: true,
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"development"' },
    plugins: [lockwireSources],
  });
  const [output] = bundled.outputFiles;
  if (!output) throw new Error('esbuild produced no page bundle');
  // React comes from node_modules, bundled into the page: no CDN.
  expect(Object.keys(bundled.metafile.inputs).some((input) => input.includes('node_modules/react-dom/'))).toBe(true);
  pageScript = output.text;
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
  // A page on the server's own origin, so Chromium lets it open sockets to loopback.
  await page.goto(`${server.httpUrl}/healthz`);
  await page.setContent('<!doctype html><title>react hooks</title><link rel="icon" href="data:,"><body></body>');
  await page.addScriptTag({ content: pageScript, type: 'module' });
  await page.waitForFunction(() => 'reactTest' in window, undefined, { timeout: 5000 });
});

afterEach(async () => {
  await page.close();
  await observer.close();
  await server.close();
  expect(pageErrors).toEqual([]);
});

function setAuto(name: string, auto: boolean): Promise<string[]> {
  return page.evaluate(([name, auto]) => (window as unknown as ReactTestWindow).reactTest.setAuto(name, auto), [name, auto] as const);
}

describe('useLock and useLockState in Chromium', () => {
  it('keeps the hold when auto changes on a mounted component, off and on again; only unmounting releases it', async () => {
    const session = await mount('flip', 'flip:react');
    await expectAttributes('flip', { status: 'held', token: /^\d+$/ });
    const token = await view('flip').getAttribute('data-token');
    let queued!: () => void;
    const isQueued = new Promise<void>((resolve) => (queued = resolve));
    const waiting = observer.acquire('flip:react', { onQueued: () => queued() });
    await isQueued;
    // Each change renders only `held`: no release (then `idle`) and no new request (then `waiting`).
    expect(new Set(await setAuto('flip', false))).toEqual(new Set(['held']));
    expect(new Set(await setAuto('flip', true))).toEqual(new Set(['held']));
    expect(new Set(await setAuto('flip', false))).toEqual(new Set(['held']));
    expect(await view('flip').getAttribute('data-token')).toBe(token);
    expect((await observer.status('flip:react')).holders.map((holder) => holder.session)).toEqual([session]);
    await page.evaluate(() => (window as unknown as ReactTestWindow).reactTest.unmount('flip'));
    expect((await waiting)?.token).toBeGreaterThan(Number(token));
  });

  it('shows the second hook user waiting at position 1, and held once the first unmounts', async () => {
    const first = await mount('first', 'doc:react');
    await expectAttributes('first', { status: 'held', token: /^\d+$/ });
    const second = await mount('second', 'doc:react');
    await expectAttributes('second', { status: 'waiting', position: '1' });

    const status = await observer.status('doc:react');
    expect(status.holders.map((holder) => holder.session)).toEqual([first]);
    expect(status.queue.map((waiter) => waiter.session)).toEqual([second]);
    await expectAttributes('first', { watch: 'ready', holder: 'first', waiters: '1' });

    const firstToken = Number(await view('first').getAttribute('data-token'));
    await page.evaluate(() => (window as unknown as ReactTestWindow).reactTest.unmount('first'));
    await expectAttributes('second', { status: 'held', holder: 'second', waiters: '0' });
    expect(Number(await view('second').getAttribute('data-token'))).toBeGreaterThan(firstToken);
    expect((await observer.status('doc:react')).holders.map((holder) => holder.session)).toEqual([second]);
  });

  it('keeps the place in line current as waiters ahead leave', async () => {
    const holder = await observer.acquire('line:react');
    await mount('a', 'line:react');
    await expectAttributes('a', { status: 'waiting', position: '1' });
    await mount('b', 'line:react');
    await expectAttributes('b', { status: 'waiting', position: '2' });
    await page.evaluate(() => (window as unknown as ReactTestWindow).reactTest.unmount('a'));
    await expectAttributes('b', { status: 'waiting', position: '1' });
    await holder?.release();
    await expectAttributes('b', { status: 'held' });
  });

  it('acquires on demand with auto false, and reports a stolen lock as lost', async () => {
    await mount('manual', 'job:react', false);
    await expectAttributes('manual', { status: 'idle', watch: 'ready', holder: '' });
    expect((await observer.status('job:react')).locked).toBe(false);

    await view('manual').locator('.acquire').click();
    await expectAttributes('manual', { status: 'held', holder: 'manual' });

    await observer.acquire('job:react', { steal: true, meta: { name: 'thief' } });
    await expectAttributes('manual', { status: 'lost', reason: 'stolen', holder: 'thief' });

    await view('manual').locator('.release').click();
    await expectAttributes('manual', { status: 'idle' });
  });

  it('shares one request and one hold between two components of one client, held until both release', async () => {
    const holder = await observer.acquire('pair:react');
    const session = await page.evaluate(
      ([url]) => (window as unknown as ReactTestWindow).reactTest.mountPair('pair', url, 'pair:react'),
      [server.url] as const,
    );
    await expectAttributes('pair-1', { status: 'waiting', position: '1' });
    await expectAttributes('pair-2', { status: 'waiting', position: '1' });
    expect((await observer.status('pair:react')).queue.map((waiter) => waiter.session)).toEqual([session]);

    await holder?.release();
    await expectAttributes('pair-1', { status: 'held', token: /^\d+$/ });
    await expectAttributes('pair-2', { status: 'held' });
    expect(await view('pair-2').getAttribute('data-token')).toBe(await view('pair-1').getAttribute('data-token'));

    await view('pair-1').locator('.release').click();
    await expectAttributes('pair-1', { status: 'idle' });
    expect(await view('pair-2').getAttribute('data-status')).toBe('held');
    expect((await observer.status('pair:react')).holders.map((holder) => holder.session)).toEqual([session]);

    await view('pair-2').locator('.release').click();
    await expectAttributes('pair-2', { status: 'idle' });
    await expect.poll(async () => (await observer.status('pair:react')).locked, { timeout: 3000 }).toBe(false);
  });

  it('releases on demand and lets the next waiter in', async () => {
    await mount('one', 'rel:react');
    await expectAttributes('one', { status: 'held' });
    await mount('two', 'rel:react');
    await expectAttributes('two', { status: 'waiting', position: '1' });
    await view('one').locator('.release').click();
    await expectAttributes('one', { status: 'idle' });
    await expectAttributes('two', { status: 'held' });
  });
});
