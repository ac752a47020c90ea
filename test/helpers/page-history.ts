/**
 * Leaving a page and coming back to it in Chromium with the back/forward
 * cache on (`useChromium({ backForwardCache: true })`): a page left by
 * navigation is frozen rather than unloaded, and going back shows it again.
 * Each step checks the page really went into the cache and came out of it,
 * so a test of a cached page cannot pass on a page that was unloaded and
 * loaded anew. Also an empty page of the server's origin with the browser
 * client bundle that the cache will keep.
 */
import type { Page } from 'playwright-core';
import { expect } from 'vitest';

/** Where a page goes when it leaves: a page of the server, not the one it left. */
const ELSEWHERE = '/v1/locks';

/** An empty page that exposes the client bundle as `window.lockwire`. */
const CLIENT_PAGE = `<!doctype html><title>client</title><link rel="icon" href="data:,">
<script type="module">import * as lockwire from '/ui/lockwire-client.js'; window.lockwire = lockwire;</script>`;

/**
 * Notes each `pagehide` and `pageshow` of the page it runs in, with the
 * page's path, in sessionStorage (which a frozen page keeps and the pages
 * of one tab and origin share).
 */
function noteTransitionsInPage(): void {
  const note = (event: PageTransitionEvent) => {
    const seen: string[] = JSON.parse(sessionStorage.getItem('transitions') ?? '[]');
    seen.push(`${event.type}${event.persisted ? ' persisted' : ''} ${location.pathname}`);
    sessionStorage.setItem('transitions', JSON.stringify(seen));
  };
  addEventListener('pagehide', note);
  addEventListener('pageshow', note);
}

/** Notes the transitions of every page `page` loads from now on. Call before its first `goto`. */
export async function noteTransitions(page: Page): Promise<void> {
  await page.addInitScript(noteTransitionsInPage);
}

/** The transitions noted so far in `page`'s tab, oldest first (e.g. `pagehide persisted /demo/editor`). */
export function transitions(page: Page): Promise<string[]> {
  return page.evaluate(() => JSON.parse(sessionStorage.getItem('transitions') ?? '[]') as string[]);
}

/**
 * Turns `page` (its transitions noted) into an empty page of the server at
 * `httpUrl` with the client bundle as `window.lockwire`, written over the
 * document at `over`. By default that is the UI's stylesheet, which the
 * back/forward cache keeps; a document served `no-store` (as /healthz is)
 * makes a page the cache never keeps.
 */
export async function openClientPage(page: Page, httpUrl: string, over = '/ui/ui.css'): Promise<void> {
  await page.goto(`${httpUrl}${over}`);
  await page.setContent(CLIENT_PAGE);
  // Writing the document dropped the listeners the init script added.
  await page.evaluate(noteTransitionsInPage);
  await page.waitForFunction(() => 'lockwire' in window, undefined, { timeout: 5000 });
}

/**
 * Navigates `page` (its transitions noted) to another page of the server at
 * `httpUrl`, and checks the page it left went into the back/forward cache.
 *
 * @returns the path of the page left, for {@link comeBackFromCache}.
 */
export async function leaveIntoCache(page: Page, httpUrl: string): Promise<string> {
  const from = new URL(page.url()).pathname;
  await page.goto(`${httpUrl}${ELSEWHERE}`);
  expect((await transitions(page)).slice(-2)).toEqual([`pagehide persisted ${from}`, `pageshow ${ELSEWHERE}`]);
  return from;
}

/**
 * Goes back to the page {@link leaveIntoCache} left, at `from`, and checks
 * it was shown from the cache (`pageshow` persisted), not loaded anew. A
 * page shown from the cache fires no `load`, which `goBack` waits for by
 * default, so this waits for the commit and then for the `pageshow`.
 */
export async function comeBackFromCache(page: Page, from: string): Promise<void> {
  const before = (await transitions(page)).length;
  await page.goBack({ waitUntil: 'commit' });
  const shown = async () => (await transitions(page)).slice(before).filter((seen) => seen.startsWith('pageshow'));
  await expect.poll(shown, { timeout: 5000 }).toEqual([`pageshow persisted ${from}`]);
}
