import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import type { MemoryStore } from '../src/memory-store.js';
import { createLockServer, type LockServer, type LockServerOptions } from '../src/server.js';
import { createStubStore, RawClient, upgradeStatusLine, within } from './server-harness.js';
import { openSilentPeer, PING_FLOOD } from './silent-peer.js';

const servers: LockServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(options: LockServerOptions = {}) {
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, ...options });
  servers.push(server);
  return server;
}

/**
 * An HTTP/1.1 keep-alive connection to the server: `send` writes a GET,
 * `write` any bytes,
 * `head()` is the head of the answer so far, `closed` resolves when the
 * server ends the connection. Destroyed after the test.
 */
async function keepAliveConnection(server: LockServer) {
  const socket = connect(server.port, '127.0.0.1');
  sockets.push(socket);
  let text = '';
  const statusLines = () => text.match(/HTTP\/1\.1 \d{3} [^\r]*/g) ?? [];
  let onData = () => {};
  socket.on('data', (chunk) => {
    text += String(chunk);
    onData();
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await within(new Promise((resolve) => socket.once('connect', resolve)), 'the HTTP connection');
  return {
    send: (path: string) => socket.write(`GET ${path} HTTP/1.1\r\nHost: lockwire\r\n\r\n`),
    write: (text: string) => socket.write(text),
    head: () => text.split('\r\n\r\n')[0] ?? '',
    /** Resolves (bounded) with the status lines once `count` answers have begun arriving. */
    answers: (count: number) =>
      within(
        new Promise<string[]>((resolve) => {
          onData = () => {
            if (statusLines().length >= count) resolve(statusLines());
          };
          onData();
        }),
        `${count} answers`,
      ),
    closed,
  };
}

async function healthStatus(server: LockServer): Promise<number> {
  return (await within(fetch(`${server.httpUrl}/healthz`), 'GET /healthz')).status;
}

describe('graceful shutdown', () => {
  it('turns /healthz 503 and refuses upgrades during the drain delay while open sessions are still served', async () => {
    const clock = createManualClock();
    const server = await start({ clock, drainDelay: 60_000 });
    const holder = await RawClient.connect(server.url);
    const waiter = await RawClient.connect(server.url);
    await holder.client.request({ op: 'acquire', id: 1, key: 'k' });
    waiter.client.send({ op: 'acquire', id: 1, key: 'k' });
    await waiter.client.next((f) => f.type === 'queued', 'queued');
    expect(await healthStatus(server)).toBe(200);

    const closed = server.close();
    expect(await healthStatus(server)).toBe(503);
    expect(await upgradeStatusLine(server.port)).toBe('HTTP/1.1 503 Service Unavailable');
    // Still served: a release hands the lock over as usual.
    expect(await holder.client.request({ op: 'release', id: 2, key: 'k' })).toMatchObject({ released: true });
    expect(await waiter.client.reply(1)).toMatchObject({ acquired: true });
    expect(server.sessionCount()).toBe(2);

    clock.advance(60_000);
    await within(closed, 'close() after the drain delay');
    expect(await within(holder.client.closed, 'the holder close')).toMatchObject({ code: 1001 });
  });

  it('answers pending acquires shutting_down, then closes every connection with 1001', async () => {
    const server = await start();
    const holder = await RawClient.connect(server.url);
    const waiter = await RawClient.connect(server.url);
    await holder.client.request({ op: 'acquire', id: 1, key: 'k' });
    waiter.client.send({ op: 'acquire', id: 'w', key: 'k' });
    await waiter.client.next((f) => f.type === 'queued', 'queued');

    await within(server.close(), 'close()');
    expect(await waiter.client.reply('w')).toMatchObject({ ok: false, error: { code: 'shutting_down' } });
    expect(await within(waiter.client.closed, 'the waiter close')).toMatchObject({ code: 1001 });
    expect(await within(holder.client.closed, 'the holder close')).toMatchObject({ code: 1001 });
    // The locks are released in the store, not left behind.
    expect((server.store as MemoryStore).inspect()).toMatchObject({ keys: 0, sessions: 0 });
  });

  it('ends every session in the store before closing it', async () => {
    const stub = createStubStore();
    const server = await start({ store: stub.store });
    const { welcome } = await RawClient.connect(server.url);
    await within(server.close(), 'close()');
    const methods = stub.calls.map((c) => c.method);
    expect(methods.indexOf('closeSession')).toBeGreaterThan(-1);
    expect(methods.indexOf('closeSession')).toBeLessThan(methods.indexOf('close'));
    expect(stub.calls.find((c) => c.method === 'closeSession')?.args[0]).toBe(welcome['session']);
  });

  it('cuts within the 2 s close handshake bound a socket already closed for abuse whose peer never answers the close', async () => {
    const clock = createManualClock();
    const server = await start({ clock, limits: { rateLimit: 1, rateBurst: 1 } });
    const peer = await openSilentPeer(server.url);
    peer.write(...PING_FLOOD);
    expect(await peer.closeFrame()).toBe(1008);
    // The clock that would cut it is never advanced: the shutdown's own bound must.
    await within(server.close(), 'close() within the close handshake bound', 4000);
    await peer.cut();
  });

  it('resolves close() after the shutdown timeout when the store never finishes closing', async () => {
    let storeClosing: () => void = () => {};
    const closeStarted = new Promise<void>((resolve) => {
      storeClosing = resolve;
    });
    const stub = createStubStore({
      close: () => {
        storeClosing();
        return new Promise<void>(() => {});
      },
    });
    const clock = createManualClock();
    const server = await start({ store: stub.store, clock, shutdownTimeout: 5000 });
    const { client } = await RawClient.connect(server.url);
    const closed = server.close();
    await within(client.closed, 'the socket close');
    await within(closeStarted, 'the store close to start');
    clock.advance(5000);
    await within(closed, 'close() bounded by the shutdown timeout');
    expect(await client.closed).toMatchObject({ code: 1001 });
  });

  it('logs a store close that fails after the shutdown timeout instead of leaving an unhandled rejection', async () => {
    let failClose: (error: Error) => void = () => {};
    const stub = createStubStore({
      close: () =>
        new Promise<void>((_resolve, reject) => {
          failClose = reject;
        }),
    });
    const logged: string[] = [];
    const note = (_obj: object, msg: string) => void logged.push(msg);
    const clock = createManualClock();
    const server = await start({ store: stub.store, clock, shutdownTimeout: 5000, logger: { debug: note, info: note, warn: note, error: note } });
    const closed = server.close();
    // No drain delay: the shutdown timer is armed within close()'s first step.
    expect(logged).toContain('draining');
    clock.advance(5000);
    await within(closed, 'close() bounded by the shutdown timeout');
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      failClose(new Error('store close failed'));
      // A rejection nobody handles is reported once the microtask queue drains.
      await new Promise<void>((resolve) => setImmediate(resolve));
      await new Promise<void>((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
      expect(logged).toContain('store close failed after the shutdown timeout');
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('answers an HTTP request in flight when close() began with Connection: close, so its keep-alive connection does not hold close()', async () => {
    let answer: () => void = () => {};
    let listCalled: () => void = () => {};
    const listStarted = new Promise<void>((resolve) => {
      listCalled = resolve;
    });
    const stub = createStubStore({
      list: () =>
        new Promise((resolve) => {
          listCalled();
          answer = () => resolve({ locks: [], truncated: false });
        }),
    });
    const server = await start({ store: stub.store, clock: createManualClock() });
    const http = await keepAliveConnection(server);
    http.send('/v1/locks');
    await within(listStarted, 'the list to start');
    const closed = server.close();
    answer();
    // Node's keep-alive timeout is 5 s: the connection must end well before.
    await within(http.closed, 'the server to end the keep-alive connection');
    await within(closed, 'close()');
    expect(http.head()).toMatch(/^HTTP\/1\.1 200 /);
    expect(http.head()).toMatch(/\r\nconnection: close(\r\n|$)/i);
  });

  it('ends a connection that has sent only part of a request head at once, so it does not hold close() until the shutdown timeout', async () => {
    const server = await start({ clock: createManualClock(), shutdownTimeout: 10_000 });
    const http = await keepAliveConnection(server);
    http.write('GET /healthz HTTP/1.1\r\nHost: lockwire\r\n');
    // A request on another connection is answered after the server has read the partial head.
    expect(await healthStatus(server)).toBe(200);
    // The manual clock is never advanced: a close() that waits for the shutdown timeout never ends.
    await within(server.close(), 'close() with a half-sent request head open');
    await within(http.closed, 'the server to end the connection');
    expect(http.head()).toBe('');
  });

  it('ends a connection that has sent nothing yet (a browser preconnect) at once, so it does not hold close() until the shutdown timeout', async () => {
    const logged: string[] = [];
    const note = (_obj: object, msg: string) => void logged.push(msg);
    const server = await start({
      clock: createManualClock(),
      shutdownTimeout: 10_000,
      logger: { debug: note, info: note, warn: note, error: note },
    });
    const http = await keepAliveConnection(server);
    expect(await healthStatus(server)).toBe(200);
    await within(server.close(), 'close() with a silent connection open');
    await within(http.closed, 'the server to end the connection');
    expect(logged).not.toContain('shutdown timed out; cutting the remaining connections');
  });

  it("keeps other idle keep-alive connections open through the drain delay: an answer ends only its own", async () => {
    const clock = createManualClock();
    const server = await start({ clock, drainDelay: 60_000 });
    const scraper = await keepAliveConnection(server);
    scraper.send('/healthz');
    expect(await scraper.answers(1)).toEqual([expect.stringMatching(/^HTTP\/1\.1 200 /)]);
    const closed = server.close();
    try {
      const checker = await keepAliveConnection(server);
      checker.send('/healthz');
      await within(checker.closed, 'the checker connection to end with its answer');
      // The scraper's idle connection was not closed with the checker's: it is still answered, then ended.
      scraper.send('/healthz');
      expect(await scraper.answers(2)).toEqual([expect.stringMatching(/ 200 /), expect.stringMatching(/^HTTP\/1\.1 503 /)]);
      await within(scraper.closed, 'the scraper connection to end with its answer');
    } finally {
      clock.advance(60_000);
    }
    await within(closed, 'close() after the drain delay');
  });

  it('answers HTTP requests during the drain delay with Connection: close and ends their connections', async () => {
    const clock = createManualClock();
    const server = await start({ clock, drainDelay: 60_000 });
    const closed = server.close();
    try {
      const http = await keepAliveConnection(server);
      http.send('/healthz');
      await within(http.closed, 'the server to end the keep-alive connection');
      expect(http.head()).toMatch(/^HTTP\/1\.1 503 /);
      expect(http.head()).toMatch(/\r\nconnection: close(\r\n|$)/i);
    } finally {
      clock.advance(60_000);
    }
    await within(closed, 'close() after the drain delay');
  });
});
