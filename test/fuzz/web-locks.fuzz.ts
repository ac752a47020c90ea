import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { createLockServer, createRedisStore, type LockServer } from '@lockwire/server';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectPageErrors, launchChromium } from '../helpers/browser.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { program, type Trace } from './web-locks-program.js';

/**
 * Random programs of Web Lock requests (exclusive and shared, `ifAvailable`,
 * `steal`, aborted signals, callbacks that end or fail) run in Chromium on
 * its own `navigator.locks` and on lockwire clients' `client.locks`: after
 * every step each request must have gone through the same (granted, in
 * which mode, called back with `null`, resolved or rejected, and with
 * what). The browser's lock manager is the reference.
 *
 * `npm run fuzz`; `FUZZ_RUNS` programs (default 100), seeded from
 * `FUZZ_SEED` (default: the clock) so that a failing one runs again; on the
 * memory store, or with `FUZZ_STORE=redis` (or `redis-nodes`, here the
 * same) on the Redis store, on a redis-server of its own.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const onRedis = (process.env.FUZZ_STORE ?? 'memory') !== 'memory';

let browser: Browser;
let server: LockServer;
let page: Page;
let pageErrors: string[];
let redis: RedisServer | null = null;

async function bundleProgram(): Promise<string> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL('./web-locks-program.ts', import.meta.url))],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'warning',
  });
  const [output] = result.outputFiles;
  if (!output) throw new Error('esbuild produced no program bundle');
  return output.text;
}

beforeAll(async () => {
  const code = await bundleProgram();
  browser = await launchChromium();
  if (onRedis) redis = await startRedisServer();
  const store = redis ? { store: createRedisStore({ url: redis.url, namespace: 'weblocks' }) } : {};
  server = await createLockServer({ port: 0, heartbeatInterval: 0, ...store });
  page = await browser.newPage();
  pageErrors = collectPageErrors(page);
  // A secure context (navigator.locks needs one) of the server's origin, which serves the client bundle.
  await page.goto(`${server.httpUrl}/healthz`);
  // As text: the test runner rewrites `import()` in functions it compiles.
  await page.evaluate(`(async () => {
    const { LockClient } = await import('/ui/lockwire-client.js');
    const moduleUrl = URL.createObjectURL(new Blob([${JSON.stringify(code)}], { type: 'text/javascript' }));
    const fuzz = await import(moduleUrl);
    const clients = [];
    for (let i = 0; i < fuzz.AGENTS; i++) clients.push(await LockClient.connect(${JSON.stringify(server.url)}, { reconnect: false }));
    window.fuzz = { ...fuzz, clients };
  })()`);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await redis?.stop();
});

describe(`Web Locks differential fuzz (${onRedis ? 'redis' : 'memory'} store, seed ${SEED})`, () => {
  it.each(Array.from({ length: RUNS }, (_, i) => SEED + i))('program %i', async (seed) => {
    const steps = program(seed);
    const traces = (await page.evaluate(
      `window.fuzz.runBoth(${JSON.stringify(steps)}, navigator.locks, window.fuzz.clients, 'p${seed}:')`,
    )) as { browser: Trace; lockwire: Trace };
    const lines = steps.map((step, i) => {
      const what = step.do === 'request' ? `#${traces.browser[i]!.length - 2} request agent ${step.agent} ${step.name} ${JSON.stringify(step.options)}` : `${step.do} #${step.request}${step.do === 'end' && step.fail ? ' (fails)' : ''}`;
      return `${i}: ${what}\n   browser:  ${JSON.stringify(traces.browser[i])}\n   lockwire: ${JSON.stringify(traces.lockwire[i])}`;
    });
    expect(traces.lockwire, `program ${seed} (FUZZ_SEED=${seed} FUZZ_RUNS=1)\n${lines.join('\n')}`).toEqual(traces.browser);
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
