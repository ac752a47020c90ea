/**
 * The page the Web Locks differential programs run in: headless Chromium
 * on a lockwire server's origin (a secure context, which `navigator.locks`
 * needs, that serves the client bundle), with `program.ts` bundled into it
 * and a lockwire client per agent.
 */
import { fileURLToPath } from 'node:url';
import { createLockServer, createRedisStore, type LockServer } from '@lockwire/server';
import type { Browser, Page } from 'playwright-core';
import { bundleForPage, collectPageErrors, launchChromium } from '../helpers/browser.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { program, type Step, type Trace } from './program.js';

export interface DifferentialPage {
  /** Runs the program of `seed` (of `length` steps) on both lock managers; `failure` is null when every step matched. */
  run(seed: number, length?: number): Promise<{ failure: string | null }>;
  /** Runs `steps` as {@link run} runs a seed's; `label` names them (and their lock names). */
  runSteps(steps: readonly Step[], label: string): Promise<{ failure: string | null }>;
  /** What the page reported as errors so far. */
  readonly pageErrors: readonly string[];
  close(): Promise<void>;
}

/** The steps of a program beside what each manager went through after each, for a failure message. */
function describeRun(steps: readonly Step[], [reference, browser]: [string, Trace], lockwire: Trace): string {
  return steps
    .map((step, i) => {
      // A step's trace holds one line per request made so far, then the query's line.
      const what =
        step.do === 'request'
          ? `#${browser[i]!.length - 2} request agent ${step.agent} ${step.name} ${JSON.stringify(step.options)}`
          : `${step.do} #${step.request}${step.do === 'end' && step.fail ? ' (fails)' : ''}`;
      return `${i}: ${what}\n   ${`${reference}:`.padEnd(9)} ${JSON.stringify(browser[i])}\n   lockwire: ${JSON.stringify(lockwire[i])}`;
    })
    .join('\n');
}

/** Opens the page; with `redis`, the lockwire server keeps its table on a redis-server of its own. */
export async function openDifferentialPage(options: { redis?: boolean } = {}): Promise<DifferentialPage> {
  const code = await bundleForPage(fileURLToPath(new URL('./program.ts', import.meta.url)));
  let browser: Browser | null = null;
  let server: LockServer | null = null;
  let redis: RedisServer | null = null;
  const close = async () => {
    await browser?.close();
    await server?.close();
    await redis?.stop();
  };
  try {
    browser = await launchChromium();
    if (options.redis === true) redis = await startRedisServer();
    const store = redis ? { store: createRedisStore({ url: redis.url, namespace: 'weblocks' }) } : {};
    server = await createLockServer({ port: 0, heartbeatInterval: 0, ...store });
    const page: Page = await browser.newPage();
    const pageErrors = collectPageErrors(page);
    await page.goto(`${server.httpUrl}/healthz`);
    // As text: the test runner rewrites `import()` in functions it compiles.
    await page.evaluate(`(async () => {
      const { LockClient } = await import('/ui/lockwire-client.js');
      const moduleUrl = URL.createObjectURL(new Blob([${JSON.stringify(code)}], { type: 'text/javascript' }));
      const differential = await import(moduleUrl);
      const clients = [];
      for (let i = 0; i < differential.AGENTS; i++) {
        clients.push(await LockClient.connect(${JSON.stringify(server.url)}, { reconnect: false }));
      }
      window.differential = { ...differential, clients };
    })()`);
    const runSteps = async (steps: readonly Step[], label: string): Promise<{ failure: string | null }> => {
      const prefix = `${label.replace(/\W+/g, '-')}:`;
      const traces = (await page.evaluate(
        `window.differential.runAll(${JSON.stringify(steps)}, navigator.locks, window.differential.clients, ${JSON.stringify(prefix)})`,
      )) as Record<'browser' | 'lockwire' | 'specAsRun' | 'spec' | 'lockwireAborts', Trace>;
      const same = (a: Trace, b: Trace) => JSON.stringify(a) === JSON.stringify(b);
      if (!same(traces.browser, traces.lockwire)) {
        return { failure: `${label}, against Chromium\n${describeRun(steps, ['browser', traces.browser], traces.lockwire)}` };
      }
      if (!same(traces.browser, traces.specAsRun)) {
        return { failure: `${label}: the spec's model differs from Chromium\n${describeRun(steps, ['browser', traces.browser], traces.specAsRun).replaceAll('lockwire:', 'model:   ')}` };
      }
      if (!same(traces.spec, traces.lockwireAborts)) {
        return {
          failure: `${label}, against the spec's model with every abort\n${describeRun(steps, ['spec', traces.spec], traces.lockwireAborts)}`,
        };
      }
      return { failure: null };
    };
    return {
      pageErrors,
      close,
      runSteps,
      run: (seed, length) => runSteps(program(seed, length), `program ${seed}`),
    };
  } catch (error) {
    await close();
    throw error;
  }
}
