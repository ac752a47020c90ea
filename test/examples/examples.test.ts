import { LockClient } from '@lockwire/client';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { collectPageErrors, launchChromium } from '../helpers/browser.js';
import { ToolProcess } from '../helpers/tool-process.js';

const running: ToolProcess[] = [];

/** Runs `node examples/<path> ARGS` from the repository root, as the examples' README says. */
function example(path: string, args: string[] = []): ToolProcess {
  const tool = new ToolProcess(process.execPath, [`examples/${path}`, ...args]);
  running.push(tool);
  return tool;
}

/** The address printed right after `label` at the start of a line (`label: http://...`, `lockwire listening on ws://...`). */
async function printedUrl(tool: ToolProcess, label: string): Promise<string> {
  const pattern = new RegExp(`^${label}:? ((?:ws|http)://\\S+)`);
  const line = await tool.waitForLine(pattern);
  return pattern.exec(line)?.[1] ?? '';
}

afterEach(() => {
  for (const tool of running.splice(0)) tool.kill();
});

describe('examples', () => {
  it('editor: serves the editor demo at the printed address and stops on Ctrl-C', async () => {
    const run = example('editor/run.mjs');
    const demo = await printedUrl(run, 'editor demo');
    expect(demo).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/demo\/editor\?doc=welcome$/);
    const response = await fetch(demo);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('id="text"');

    const wsUrl = await printedUrl(run, 'lockwire listening on');
    const client = await LockClient.connect(wsUrl);
    expect(client.server).toMatch(/^lockwire\//);
    await client.close();

    run.signal('SIGINT');
    expect((await run.waitForExit()).code).toBe(0);
    expect(run.text()).toContain('stopped');
  });

  it('game rooms: three processes host every room in turn, never two matches in one room at once', async () => {
    const run = example('game-rooms/run.mjs');
    expect((await run.waitForExit(30_000)).code).toBe(0);
    const matches = run.lines.stdout
      .map((line) => /^(room:\d)  match (\d) hosted by (game-\d)  token (\d+)/.exec(line))
      .filter((match) => match !== null);
    expect(matches).toHaveLength(9);
    for (const room of ['room:1', 'room:2', 'room:3']) {
      const inRoom = matches.filter((match) => match[1] === room);
      expect(new Set(inRoom.map((match) => match[3]))).toEqual(new Set(['game-1', 'game-2', 'game-3']));
      const tokens = inRoom.map((match) => Number(match[4]));
      expect(tokens).toEqual([...tokens].sort((a, b) => a - b));
    }
    expect(run.lines.stdout.at(-1)).toBe('9 matches, never two in one room at once');
  });

  it('job runner: one worker computes the report while the others wait for it and read it', async () => {
    const run = example('job-runner/run.mjs');
    expect((await run.waitForExit(30_000)).code).toBe(0);
    const computed = run.lines.stdout.filter((line) => / computed report:2024 in \d+ ms: /.test(line));
    const waited = run.lines.stdout.filter((line) => / waited \d+ ms, then read report:2024: \{"rows":1234/.test(line));
    expect(computed).toHaveLength(1);
    expect(waited).toHaveLength(4);
    expect(run.lines.stdout.at(-1)).toBe('report:2024 computed 1 time(s) for 5 workers');
  });

  describe('dashboard embed', () => {
    let browser: Browser | undefined;

    afterAll(async () => {
      await browser?.close();
    });

    it("shows one key's holder and queue live in a page on another web server", async () => {
      const run = example('dashboard-embed/run.mjs', ['--key', 'deploy', '--no-worker']);
      const embed = await printedUrl(run, 'embed');
      const wsUrl = await printedUrl(run, 'lockwire listening on');
      expect(new URL(embed).port).not.toBe(new URL(wsUrl).port);

      browser = await launchChromium();
      const page = await browser.newPage();
      const errors = collectPageErrors(page);
      await page.goto(embed);
      const state = page.locator('#state');
      await expect.poll(() => state.textContent(), { timeout: 5000 }).toBe('free');

      const ana = await LockClient.connect(wsUrl);
      const bob = await LockClient.connect(wsUrl);
      const lease = await ana.acquire('deploy', { meta: { user: 'ana' } });
      await expect.poll(() => state.textContent(), { timeout: 5000 }).toBe('held by ana');
      const queued = bob.acquire('deploy', { meta: { user: 'bob' } });
      await expect.poll(() => page.locator('#detail').textContent(), { timeout: 5000 }).toBe('1 waiting');
      await lease?.release();
      await expect.poll(() => state.textContent(), { timeout: 5000 }).toBe('held by bob');
      await (await queued)?.release();
      await expect.poll(() => state.textContent(), { timeout: 5000 }).toBe('free');
      expect(await page.locator('#events li').count()).toBeGreaterThanOrEqual(5);
      expect(errors).toEqual([]);

      await ana.close();
      await bob.close();
      run.signal('SIGINT');
      expect((await run.waitForExit()).code).toBe(0);
    });
  });
});
