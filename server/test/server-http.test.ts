import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpHandler } from '../src/http.js';
import { silentLogger } from '../src/logger.js';
import { createLockMetrics } from '../src/metrics.js';
import { createLockServer, type LockServer } from '../src/server.js';
import { callArgs, createStubStore, RawClient, upgradeStatusLine, within } from './server-harness.js';

const servers: LockServer[] = [];

async function start(stub = createStubStore()) {
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: stub.store });
  servers.push(server);
  return { server, stub };
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function get(url: string) {
  const res = await within(fetch(url), `GET ${url}`);
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

describe('HTTP endpoints', () => {
  it('reports health with the store kind and the number of sessions', async () => {
    const { server } = await start();
    const { client } = await RawClient.connect(server.url);
    const health = await get(`${server.httpUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(health.type).toMatch(/^application\/json/);
    expect(JSON.parse(health.text)).toEqual({ ok: true, store: 'stub', sessions: 1 });
    await client.close();
  });

  it('answers /healthz with 503 while the server is closing', async () => {
    const stub = createStubStore();
    const handler = createHttpHandler({
      store: stub.store,
      logger: silentLogger,
      metrics: createLockMetrics(),
      maxKeyLength: 256,
      isClosing: () => true,
      sessionCount: () => 0,
    });
    const http = createServer(handler);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = http.address() as AddressInfo;
      const res = await get(`http://127.0.0.1:${port}/healthz`);
      expect(res).toMatchObject({ status: 503, text: '{"ok":false}' });
    } finally {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it('lists locks under a prefix with a limit, without heldByYou', async () => {
    const stub = createStubStore({
      list: async () => ({
        locks: [{ key: 'doc:1', locked: true, mode: 'exclusive', holders: [], queue: [] }],
        truncated: true,
      }),
    });
    const { server } = await start(stub);
    const res = await get(`${server.httpUrl}/v1/locks?prefix=doc%3A&limit=1`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toEqual({
      locks: [{ key: 'doc:1', locked: true, mode: 'exclusive', holders: [], queue: [] }],
      truncated: true,
    });
    expect(callArgs(stub.calls, 'list')).toEqual(['doc:', 1, null]);
    await get(`${server.httpUrl}/v1/locks`);
    expect(callArgs(stub.calls, 'list', 1)).toEqual(['', 1000, null]);
  });

  it('answers a bad limit with 400 bad_request and does not call the store', async () => {
    const { server, stub } = await start();
    for (const limit of ['0', '10001', 'ten', '-1', '1.5']) {
      const res = await get(`${server.httpUrl}/v1/locks?limit=${limit}`);
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text)).toEqual({ error: { code: 'bad_request', message: expect.stringContaining('limit') } });
    }
    expect(stub.calls.filter((c) => c.method === 'list')).toEqual([]);
  });

  it('serves a page naming lockwire at / and 404 JSON elsewhere', async () => {
    const { server } = await start();
    const home = await get(`${server.httpUrl}/`);
    expect(home.status).toBe(200);
    expect(home.type).toMatch(/^text\/html/);
    expect(home.text).toContain('lockwire');
    const missing = await get(`${server.httpUrl}/nope`);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.text)).toMatchObject({ error: { code: 'not_found' } });
  });

  it('upgrades only on /v1, with or without a query string, and answers 404 on other paths', async () => {
    const { server } = await start();
    expect(await upgradeStatusLine(server.port, '/v2')).toBe('HTTP/1.1 404 Not Found');
    expect(await upgradeStatusLine(server.port, '/')).toBe('HTTP/1.1 404 Not Found');
    const { client, welcome } = await RawClient.connect(`${server.url}?session=abc`);
    expect(welcome.type).toBe('welcome');
    await client.close();
    expect(await upgradeStatusLine(server.port, '/v1/extra')).toBe('HTTP/1.1 404 Not Found');
  });
});
