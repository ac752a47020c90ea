/**
 * Real-browser test support: Debian's Chromium driven by playwright-core
 * (never a downloaded browser), the path of the UI the server serves (built
 * once per vitest run by test/global-setup.ts), page error collection and a
 * non-blank check for screenshots.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';

export const CHROMIUM_PATH = '/usr/bin/chromium';
const ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
/** Where browser tests leave screenshots and measurements (git-ignored). */
export const RESULTS_DIR = join(ROOT, 'test-results');

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** The switch playwright-core adds by default; left out, Chromium keeps its back/forward cache. */
const BACK_FORWARD_CACHE_OFF = '--disable-back-forward-cache';

/** How {@link launchChromium} starts the browser. */
export interface ChromiumOptions {
  /**
   * Keep the back/forward cache on, as every user's Chrome has it: a page
   * left by navigation is then frozen with its sockets rather than unloaded
   * (`pagehide` with `persisted: true`), and going back shows it again
   * (`pageshow` with `persisted: true`) instead of loading it anew.
   * playwright-core turns the cache off by default
   * (`--disable-back-forward-cache`), so a suite about pages leaving must
   * ask for it. Default `false`.
   */
  backForwardCache?: boolean;
}

/**
 * Launches headless Chromium from `/usr/bin/chromium`.
 *
 * @throws Error naming the fix (`apt-get install -y chromium`) when the
 * binary is missing: the browser suites fail loudly rather than skip.
 */
export async function launchChromium(options: ChromiumOptions = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `${CHROMIUM_PATH} is missing: the browser tests drive Debian's Chromium. ` +
        'Install it with `apt-get update && apt-get install -y chromium` (npm test does this when it can).',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    ...(options.backForwardCache === true ? { ignoreDefaultArgs: [BACK_FORWARD_CACHE_OFF] } : {}),
  });
}

/** Chromium for one test file, with one browser context for the running test. */
export interface FileChromium {
  /** The running test's context, opened on first use and the same for the rest of the test. */
  context(): Promise<BrowserContext>;
  /**
   * Closes the test's context (and its pages). For the file's `afterEach`,
   * before it checks the pages' errors: a closing page can still report some.
   */
  closeContext(): Promise<void>;
}

/**
 * Launches Chromium (with `options`) before the file's tests (`beforeAll`)
 * and closes it after them (`afterAll`). Call at the top level of a test file.
 */
export function useChromium(options: ChromiumOptions = {}): FileChromium {
  let browser: Browser | undefined;
  let context: BrowserContext | undefined;
  beforeAll(async () => {
    browser = await launchChromium(options);
  });
  afterAll(async () => {
    await browser?.close();
  });
  return {
    async context() {
      if (!browser) throw new Error('Chromium is launched in beforeAll');
      context ??= await browser.newContext();
      return context;
    },
    async closeContext() {
      await context?.close();
      context = undefined;
    },
  };
}

/** Path of a built UI file. */
export function uiDistPath(name: string): string {
  return join(ROOT, 'server/dist/ui', name);
}

/** Errors a page reported: uncaught exceptions and `console.error` lines. */
export function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console.error: ${message.text()}`);
  });
  return errors;
}

/** Writes an artifact under `test-results/` and returns its path. */
export function saveResult(name: string, contents: string | Buffer): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, name);
  writeFileSync(path, contents);
  return path;
}

/** What a screenshot looks like, measured by decoding it in the browser. */
export interface ImageStats {
  width: number;
  height: number;
  /** Distinct colours among sampled pixels (quantised to 5 bits a channel). */
  colours: number;
  /** Standard deviation of sampled pixels' luminance, 0-255. */
  luminanceStdDev: number;
}

/**
 * Decodes a PNG in `page` (a canvas, no Node image library) and measures it.
 * A blank page gives one colour and a deviation of 0.
 */
export async function measurePng(page: Page, png: Buffer): Promise<ImageStats> {
  return page.evaluate(async (base64) => {
    const image = new Image();
    image.src = `data:image/png;base64,${base64}`;
    await image.decode();
    const canvas = document.createElement('canvas');
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext('2d');
    if (!context) throw new Error('no 2d canvas');
    context.drawImage(image, 0, 0);
    const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
    const colours = new Set<number>();
    let sum = 0;
    let sumSquares = 0;
    let samples = 0;
    // Every 7th pixel is plenty to tell a page from an empty one.
    for (let i = 0; i < data.length; i += 4 * 7) {
      const r = data[i] ?? 0;
      const g = data[i + 1] ?? 0;
      const b = data[i + 2] ?? 0;
      colours.add(((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3));
      const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
      sum += luminance;
      sumSquares += luminance * luminance;
      samples++;
    }
    const mean = sum / samples;
    return {
      width: canvas.width,
      height: canvas.height,
      colours: colours.size,
      luminanceStdDev: Math.sqrt(Math.max(0, sumSquares / samples - mean * mean)),
    };
  }, png.toString('base64'));
}

/**
 * `entry` and what it imports as one ES module for a page, as text (to load
 * from a blob URL): for test code that runs in the browser.
 */
export async function bundleForPage(entry: string): Promise<string> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'warning',
  });
  const [output] = result.outputFiles;
  if (!output) throw new Error(`esbuild produced no bundle of ${entry}`);
  return output.text;
}
