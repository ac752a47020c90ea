import { fileURLToPath } from 'node:url';
import { createLockServer, type LockServer } from '@lockwire/server';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleForPage, collectPageErrors, launchChromium } from '../helpers/browser.js';
import type { CaseResult } from '../web-locks/index.js';
import { suites } from '../web-locks/index.js';

let browser: Browser;
let server: LockServer;
let page: Page;
let pageErrors: string[];
let results: CaseResult[];

beforeAll(async () => {
  // The suites import only types, so the bundle imports nothing.
  const suitesCode = await bundleForPage(fileURLToPath(new URL('../web-locks/index.ts', import.meta.url)));
  browser = await launchChromium();
  server = await createLockServer({ port: 0, heartbeatInterval: 0 });
  page = await browser.newPage();
  pageErrors = collectPageErrors(page);
  // Any page of the server gives the origin the client bundle loads from.
  await page.goto(`${server.httpUrl}/healthz`);
  // A script in the page, as text: the test runner rewrites `import()` in functions it compiles.
  const script = `(async () => {
    const { LockClient } = await import('/ui/lockwire-client.js');
    const moduleUrl = URL.createObjectURL(new Blob([${JSON.stringify(suitesCode)}], { type: 'text/javascript' }));
    const { runSuites } = await import(moduleUrl);
    return runSuites(() => LockClient.connect(${JSON.stringify(server.url)}, { reconnect: false }));
  })()`;
  results = (await page.evaluate(script)) as CaseResult[];
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

describe('the Web Locks port in Chromium', () => {
  it('runs every case of every suite in the page', () => {
    const expected = suites.flatMap((suite) => suite.cases.map((c) => `${suite.name}: ${c.name}`));
    expect(results.map((r) => `${r.suite}: ${r.name}`)).toEqual(expected);
    expect(pageErrors).toEqual([]);
  });

  for (const suite of suites) {
    describe(`web-locks/${suite.name}`, () => {
      for (const testCase of suite.cases) {
        it(testCase.name, () => {
          const result = results.find((r) => r.suite === suite.name && r.name === testCase.name);
          expect(result?.error).toBeUndefined();
          expect(result?.ok).toBe(true);
        });
      }
    });
  }
});
