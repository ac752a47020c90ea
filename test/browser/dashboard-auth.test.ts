import { LockClient } from '@lockwire/client';
import { createLockServer, type LockServer } from '@lockwire/server';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { signToken } from '../../server/src/cli-token.js';
import { collectPageErrors, launchChromium } from '../helpers/browser.js';

const SECRET = 'dashboard-auth-test-secret-of-enough-length';
let browser: Browser;
let server: LockServer;

beforeAll(async () => {
  browser = await launchChromium();
  server = await createLockServer({ port: 0, auth: { secret: SECRET } });
});

afterAll(async () => {
  await server?.close();
  await browser?.close();
});

const token = (sub: string, watch: string[]) =>
  signToken({ sub, locks: ['room:*'], watch, steal: [], admin: [] }, { secret: SECRET, ttlSeconds: 600, now: Date.now() });

it('with auth on, the dashboard opened with ?access_token= connects with that token and shows what it may see', async () => {
  const holder = await LockClient.connect(server.url, { headers: { authorization: `Bearer ${await token('ana', ['room:*'])}` } });
  await holder.acquire('room:7', { meta: { user: 'ana' } });
  const page = await browser.newPage();
  const errors = collectPageErrors(page);
  try {
    await page.goto(`${server.httpUrl}/?access_token=${encodeURIComponent(await token('ops', ['room:*']))}`);
    await page.locator('#conn-state[data-state="live"]').waitFor({ timeout: 5000 });
    await page.locator('.lock-row[data-key="room:7"]').waitFor({ timeout: 2000 });
    expect(errors).toEqual([]);
  } finally {
    await page.close();
    await holder.close();
  }
});

it('with auth on, the dashboard without a token is refused', async () => {
  const response = await fetch(`${server.httpUrl}/`);
  expect(response.status).toBe(401);
});

it('with a token that may lock but not watch doc keys, a waiting editor tab says someone else is editing, not nobody', async () => {
  const editorToken = (sub: string) =>
    signToken({ sub, locks: ['doc:*'], watch: [], steal: [], admin: [] }, { secret: SECRET, ttlSeconds: 600, now: Date.now() });
  const context = await browser.newContext();
  try {
    const open = async (user: string) => {
      const page = await context.newPage();
      const errors = collectPageErrors(page);
      await page.goto(`${server.httpUrl}/demo/editor?doc=blind&user=${user}&access_token=${encodeURIComponent(await editorToken(user))}`);
      return { page, errors };
    };
    const first = await open('ana');
    await first.page.locator('#who[data-role="editing"]').waitFor({ timeout: 5000 });
    const second = await open('bo');
    await second.page.locator('#who[data-role="waiting"]').waitFor({ timeout: 5000 });
    // The token hides who edits (its watch sees nothing of doc:*), but a tab in line knows someone does.
    expect(await second.page.locator('#who').textContent()).toBe(
      'Read-only: someone else is editing. You are number 1 in line; you take over when the tabs ahead close.',
    );
    await first.page.close();
    await second.page.locator('#who[data-role="editing"]').waitFor({ timeout: 5000 });
    expect([...first.errors, ...second.errors]).toEqual([]);
  } finally {
    await context.close();
  }
});
