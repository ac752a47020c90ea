import { LockClient } from '@lockwire/client';
import { createLockServer, createManualClock, type LockServer } from '@lockwire/server';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { collectPageErrors, useChromium } from '../helpers/browser.js';

const chromium = useChromium();
let server: LockServer | undefined;
let pageErrors: string[] = [];
const clients: LockClient[] = [];

afterEach(async () => {
  await chromium.closeContext();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await server?.close();
  server = undefined;
  expect(pageErrors).toEqual([]);
});

async function start(): Promise<LockServer> {
  server = await createLockServer({ port: 0, heartbeatInterval: 0, clock: createManualClock(Date.now()) });
  return server;
}

async function connect(live: LockServer): Promise<LockClient> {
  const client = await LockClient.connect(live.url);
  clients.push(client);
  return client;
}

async function openDashboard(live: LockServer): Promise<Page> {
  const page = await (await chromium.context()).newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  pageErrors = collectPageErrors(page);
  await page.goto(`${live.httpUrl}/`);
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
