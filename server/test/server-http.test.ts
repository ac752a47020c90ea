import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpHandler } from '../src/http.js';
import { watchHttpConnections } from '../src/http-connections.js';
import { silentLogger } from '../src/logger.js';
import { createLockMetrics } from '../src/metrics.js';
import { createLockServer, type LockServer } from '../src/server.js';
import { createUiRoutes } from '../src/ui-routes.js';
import { callArgs, createStubStore, RawClient, upgradeStatusLine, within } from './server-harness.js';

const servers: LockServer[] = [];

async function start(stub = createStubStore()) {
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: stub.store });
  servers.push(server);
  return { server, stub };
}

const uiServers: Server[] = [];
const uiDirs: string[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
  const ui = uiServers.splice(0);
  for (const server of ui) server.closeAllConnections();
  await Promise.all(ui.map((server) => new Promise((resolve) => server.close(resolve))));
  await Promise.all(uiDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A bare HTTP server of the UI routes over a fresh folder; returns its base URL and the folder. */
async function startUi() {
  const dir = await mkdtemp(join(tmpdir(), 'lockwire-ui-'));
  uiDirs.push(dir);
  const routes = createUiRoutes({ dir });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://lockwire');
    const route = routes(url.pathname);
    if (route) return route(url, res, req);
    res.writeHead(404).end();
  });
  uiServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, dir };
}

/** Writes `request` on a new connection and resolves with everything read once the server ended it. */
function exchange(port: number, request: string): Promise<{ head: string; body: string }> {
  return within(
    new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(request));
      let text = '';
      socket.on('data', (chunk) => {
        text += String(chunk);
      });
      socket.on('error', reject);
      socket.on('close', () => {
        const end = text.indexOf('\r\n\r\n');
        resolve({ head: end === -1 ? text : text.slice(0, end), body: end === -1 ? '' : text.slice(end + 4) });
      });
    }),
    `the answer to ${JSON.stringify(request.split('\r\n')[0])} and the end of its connection`,
  );
}

/** What `curl --http2` sends over plain HTTP: a request that offers to switch to HTTP/2 (h2c). */
const offeringH2c = (method: string, path: string) =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n` +
  'HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n';

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

  it('serves the dashboard and the editor demo with framing refused, and their scripts without', async () => {
    const { server } = await start();
    for (const path of ['/', '/demo/editor']) {
      const res = await within(fetch(`${server.httpUrl}${path}`), `GET ${path}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('x-frame-options')).toBe('DENY');
      expect(res.headers.get('content-security-policy')).toBe("frame-ancestors 'none'");
      const again = await within(
        fetch(`${server.httpUrl}${path}`, { headers: { 'if-none-match': res.headers.get('etag') ?? '' } }),
        `GET ${path} again`,
      );
      expect(again.status).toBe(304);
      expect(again.headers.get('x-frame-options')).toBe('DENY');
    }
    const script = await within(fetch(`${server.httpUrl}/ui/dashboard.js`), 'GET /ui/dashboard.js');
    expect(script.status).toBe(200);
    expect(script.headers.get('x-frame-options')).toBeNull();
  });

  it('answers a request that offers an h2c upgrade (curl --http2) as a plain request and then ends the connection', async () => {
    const { server } = await start();
    const health = await exchange(server.port, offeringH2c('GET', '/healthz'));
    expect(health.head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(health.head).toMatch(/\r\nconnection: close(\r\n|$)/i);
    expect(JSON.parse(health.body)).toEqual({ ok: true, store: 'stub', sessions: 0 });
    const locks = await exchange(server.port, offeringH2c('GET', '/v1/locks'));
    expect(locks.head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(JSON.parse(locks.body)).toEqual({ locks: [], truncated: false });
    const metrics = await exchange(server.port, offeringH2c('GET', '/metrics'));
    expect(metrics.head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(metrics.body).toContain('lockwire_');
    expect((await exchange(server.port, offeringH2c('GET', '/'))).head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    const head = await exchange(server.port, offeringH2c('HEAD', '/healthz'));
    expect(head).toMatchObject({ head: expect.stringMatching(/^HTTP\/1\.1 200 OK\r\n/), body: '' });
    const missing = await exchange(server.port, offeringH2c('GET', '/v1'));
    expect(missing.head).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
    expect(JSON.parse(missing.body)).toMatchObject({ error: { code: 'not_found' } });
  });

  it('answers a request whose header block is too large with 431 and ends the connection, instead of dropping it unanswered', async () => {
    const { server } = await start();
    const answer = await exchange(
      server.port,
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(20_000)}\r\nConnection: close\r\n\r\n`,
    );
    expect(answer.head).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(answer.head).toMatch(/\r\nConnection: close(\r\n|$)/);
  });

  it('answers a request target longer than the header limit (a long access_token in the dashboard URL) with 431, and logs it without the token', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const note = (fields: object, msg: string) => void lines.push({ ...fields, msg });
    const server = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      store: createStubStore().store,
      logger: { debug: note, info: note, warn: note, error: note },
    });
    servers.push(server);
    const answer = await exchange(server.port, `GET /v1?access_token=${'t'.repeat(17_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(answer.head).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(lines).toContainEqual({ msg: 'request refused', remote: '127.0.0.1', status: 431, reason: 'HPE_HEADER_OVERFLOW' });
    expect(JSON.stringify(lines)).not.toContain('ttttt');
  });

  it('answers a malformed header line with 400 and ends the connection, instead of dropping it unanswered', async () => {
    const { server } = await start();
    const answer = await exchange(server.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n');
    expect(answer).toEqual({ head: expect.stringMatching(/^HTTP\/1\.1 400 Bad Request\r\n/), body: '' });
  });

  it('answers a request head not complete within the headers timeout with 408 and ends the connection', async () => {
    // Node's own timeout, in real time: a server of its own with a short one and the lock server's answers.
    const http = createServer({ headersTimeout: 100, requestTimeout: 200, connectionsCheckingInterval: 20 }, (_req, res) =>
      res.end(),
    );
    watchHttpConnections(http, silentLogger);
    uiServers.push(http);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const answer = await exchange((http.address() as AddressInfo).port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n');
    expect(answer).toEqual({ head: expect.stringMatching(/^HTTP\/1\.1 408 Request Timeout\r\n/), body: '' });
  });

  it('takes an upgrade that offers WebSocket in any case as a WebSocket upgrade, on /v1 only', async () => {
    const { server } = await start();
    const upgrade = (offer: string) =>
      `GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: ${offer}\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
    const socket = connect(server.port, '127.0.0.1', () => socket.write(upgrade('WebSocket')));
    socket.on('error', () => undefined);
    const switched = await within(
      new Promise<string>((resolve) => socket.once('data', (chunk) => resolve(String(chunk).split('\r\n')[0] ?? ''))),
      'the answer to an upgrade offering WebSocket',
    );
    socket.destroy();
    expect(switched).toBe('HTTP/1.1 101 Switching Protocols');
    expect(await upgradeStatusLine(server.port, '/healthz')).toBe('HTTP/1.1 404 Not Found');
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

describe('UI files', () => {
  it('reads and hashes each file once and serves it from memory after that, the same bytes and ETag', async () => {
    const { base, dir } = await startUi();
    await writeFile(join(dir, 'dashboard.js'), 'first');
    const first = await within(fetch(`${base}/ui/dashboard.js`), 'the first GET');
    expect(await first.text()).toBe('first');
    await writeFile(join(dir, 'dashboard.js'), 'second, longer');
    const again = await within(fetch(`${base}/ui/dashboard.js`), 'the second GET');
    expect(await again.text()).toBe('first');
    expect(again.headers.get('etag')).toBe(first.headers.get('etag'));
  });

  it('answers 304 to an If-None-Match holding the current ETag in its weak form, in a list, or as *', async () => {
    const { base, dir } = await startUi();
    await writeFile(join(dir, 'ui.css'), 'body { margin: 0 }');
    const first = await within(fetch(`${base}/ui/ui.css`), 'the first GET');
    await first.arrayBuffer();
    const etag = first.headers.get('etag') ?? '';
    expect(etag).toMatch(/^"[^"]+"$/);
    for (const header of [etag, `W/${etag}`, `"other", ${etag}`, `"other",W/${etag} ,"more"`, '*']) {
      const again = await within(fetch(`${base}/ui/ui.css`, { headers: { 'if-none-match': header } }), header);
      await again.arrayBuffer();
      expect({ header, status: again.status }).toEqual({ header, status: 304 });
    }
    for (const header of ['"other"', `W/"other", "x${etag.slice(1)}`]) {
      const again = await within(fetch(`${base}/ui/ui.css`, { headers: { 'if-none-match': header } }), header);
      expect({ header, status: again.status, text: await again.text() }).toEqual({ header, status: 200, text: 'body { margin: 0 }' });
    }
  });

  it('serves a page that was missing once the build wrote it', async () => {
    const { base, dir } = await startUi();
    expect((await within(fetch(`${base}/`), 'GET / before the build')).status).toBe(503);
    await writeFile(join(dir, 'dashboard.html'), '<!doctype html><title>lockwire</title>');
    const built = await within(fetch(`${base}/`), 'GET / after the build');
    expect(built.status).toBe(200);
    expect(await built.text()).toContain('lockwire');
  });
});
