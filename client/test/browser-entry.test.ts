import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { LockClient, webSocketTransport } from '../src/index.js';
import { abortedWith, startHarness, type Harness } from './fixtures.js';

const srcDir = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/** Every client source file reachable from `entry` through relative imports. */
function importGraph(entry: string): Map<string, string> {
  const files = new Map<string, string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    const text = readFileSync(file, 'utf8');
    files.set(file, text);
    for (const match of text.matchAll(/from '(\.[^']+)\.js'/g)) {
      const spec = match[1];
      if (spec) visit(resolve(dirname(file), `${spec}.ts`));
    }
  };
  visit(resolve(srcDir, entry));
  return files;
}

describe('browser entry', () => {
  it('imports nothing from ws, node: modules or Buffer', () => {
    const graph = importGraph('index.ts');
    expect([...graph.keys()].map((file) => file.slice(srcDir.length + 1)).sort()).toContain('lock-client.ts');
    for (const [file, text] of graph) {
      const bare = [...text.matchAll(/from '([^.][^']*)'/g)].map((match) => match[1]);
      expect(bare.filter((spec) => spec !== '@lockwire/protocol'), file).toEqual([]);
      expect(text, file).not.toMatch(/\bBuffer\b|\brequire\(|process\./);
    }
  });

  it('the Node entry is the only file that imports ws', () => {
    const graph = importGraph('node.ts');
    const importers = [...graph].filter(([, text]) => /from 'ws'/.test(text)).map(([file]) => file);
    expect(importers).toEqual([resolve(srcDir, 'node.ts')]);
  });
});

describe('the global WebSocket transport', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
    // ws implements the browser's addEventListener/MessageEvent surface, standing in for a page's WebSocket.
    vi.stubGlobal('WebSocket', WebSocket);
  });
  afterEach(async () => {
    vi.unstubAllGlobals();
    await h.close();
  });

  it('connects, locks and sees the connection end through the browser code path', async () => {
    const client = await LockClient.connect(h.server.url, { transport: webSocketTransport });
    const other = await h.connect();
    const lease = await client.acquire('doc:browser', { meta: { tab: 1 } });
    expect((await other.status('doc:browser')).holders[0]?.session).toBe(client.session);
    await h.server.close();
    expect(await abortedWith(lease?.signal ?? AbortSignal.abort())).toMatchObject({
      code: 'connection_lost',
      close: { code: 1001 },
    });
  });

  it('fails with a TypeError naming the fix when the runtime has no WebSocket', async () => {
    vi.stubGlobal('WebSocket', undefined);
    await expect(LockClient.connect(h.server.url)).rejects.toThrow(/no global WebSocket/);
  });
});
