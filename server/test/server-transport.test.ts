import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLockServer, type LockServer, type LockServerOptions } from '../src/server.js';
import { createStubStore, RawClient, within } from './server-harness.js';

const servers: LockServer[] = [];
const clients: RawClient[] = [];

async function start(options: LockServerOptions = {}) {
  const stub = createStubStore();
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: stub.store, ...options });
  servers.push(server);
  return { server, stub };
}

async function connect(url: string, options?: Parameters<typeof RawClient.connect>[1]) {
  const connection = await RawClient.connect(url, options);
  clients.push(connection.client);
  return connection;
}

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

describe('heartbeat', () => {
  it('terminates a connection that does not answer pings and ends its session', async () => {
    const { server, stub } = await start({ heartbeatInterval: 50 });
    const { client } = await connect(server.url, { autoPong: false });
    const closed = await within(client.closed, 'the silent connection to be cut', 2000);
    expect(closed.code).toBe(1006);
    // The server may see its own socket close a moment after the client does.
    await vi.waitUntil(() => server.sessionCount() === 0, { timeout: 2000 });
    expect(stub.calls.filter((c) => c.method === 'closeSession')).toHaveLength(1);
  });

  it('keeps a connection that answers pings', async () => {
    const { server } = await start({ heartbeatInterval: 20 });
    const { client } = await connect(server.url);
    let pings = 0;
    await within(
      new Promise<void>((resolve) =>
        client.ws.on('ping', () => {
          if (++pings === 4) resolve();
        }),
      ),
      'four pings',
    );
    expect(await client.request({ op: 'ping', id: 1 })).toMatchObject({ ok: true });
    expect(server.sessionCount()).toBe(1);
  });

  it('keeps a connection that sends frames, even one that never answers pings', async () => {
    const { server } = await start({ heartbeatInterval: 20 });
    const { client } = await connect(server.url, { autoPong: false });
    let pings = 0;
    await within(
      new Promise<void>((resolve) =>
        client.ws.on('ping', () => {
          client.ws.send(JSON.stringify({ op: 'ping', id: ++pings }));
          if (pings === 4) resolve();
        }),
      ),
      'four pings',
    );
    expect(await client.reply(4)).toMatchObject({ ok: true });
    expect(server.sessionCount()).toBe(1);
  });

  it('keeps a connection whose pong arrived while the server itself was stalled past a heartbeat', async () => {
    const interval = 50;
    const { server } = await start({ heartbeatInterval: interval });
    const { client } = await connect(server.url);
    let pings = 0;
    await within(
      new Promise<void>((resolve) =>
        client.ws.on('ping', () => {
          pings++;
          // The pong is already written; the server's event loop now stalls
          // (as in a long GC pause) before it can read it.
          if (pings === 1) {
            const until = performance.now() + 3 * interval;
            while (performance.now() < until);
          }
          if (pings === 3) resolve();
        }),
      ),
      'three pings',
    );
    expect(await client.request({ op: 'ping', id: 1 })).toMatchObject({ ok: true });
    expect(server.sessionCount()).toBe(1);
  });
});

describe('heartbeat under a server stall', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('gives a peer the time to answer even when a stall delayed the pings after the timer fired on time', async () => {
    const interval = 200;
    const realSetInterval = globalThis.setInterval;
    let ticks = 0;
    let stallOnTick = -1;
    // The heartbeat's timer fires on time; then something else due in the
    // same turn (another timer, a GC pause) holds the loop for most of an
    // interval before the heartbeat's pings go out.
    vi.spyOn(globalThis, 'setInterval').mockImplementation(((fn: () => void, ms: number) =>
      realSetInterval(() => {
        fn();
        if (++ticks === stallOnTick) {
          const until = performance.now() + 0.85 * interval;
          while (performance.now() < until);
        }
      }, ms)) as typeof setInterval);
    const { server } = await start({ heartbeatInterval: interval });
    vi.restoreAllMocks();
    const { client } = await connect(server.url, { autoPong: false });
    // A healthy peer a quarter interval away: it answers each ping 50 ms later.
    let pings = 0;
    let pinged: () => void = () => {};
    client.ws.on('ping', (data) => {
      pings++;
      pinged();
      setTimeout(() => client.ws.readyState === 1 && client.ws.pong(data), interval / 4);
    });
    stallOnTick = ticks + 2;
    const closed = client.closed.then(({ code }) => {
      throw new Error(`the connection was cut (${code})`);
    });
    await within(
      Promise.race([new Promise<void>((resolve) => (pinged = () => pings >= 6 && resolve())), closed]),
      'six pings, the stall among them',
      6000,
    );
    expect(ticks).toBeGreaterThan(stallOnTick);
    expect(server.sessionCount()).toBe(1);
  });
});

describe('maxPayload', () => {
  it('defaults to 64 KiB: a larger frame closes the connection with 1009', async () => {
    const { server } = await start();
    const { client } = await connect(server.url);
    // Just within the limit: answered (bad_request for the unknown field), connection kept.
    const filler = 'x'.repeat(64 * 1024 - 40);
    client.ws.send(JSON.stringify({ op: 'ping', id: 1, pad: filler }).padEnd(64 * 1024, ' '));
    expect(await client.reply(1)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    client.ws.send('x'.repeat(64 * 1024 + 1));
    expect(await within(client.closed, 'the close')).toMatchObject({ code: 1009 });
  });

  it('follows the configured limit and announces it in the welcome', async () => {
    const { server } = await start({ limits: { maxPayload: 2048 } });
    const { client, welcome } = await connect(server.url);
    expect(welcome).toMatchObject({ limits: { maxPayload: 2048 } });
    client.ws.send(' '.repeat(2049));
    expect(await within(client.closed, 'the close')).toMatchObject({ code: 1009 });
  });
});

describe('createLockServer', () => {
  it('reports its real port and URLs when asked for port 0', async () => {
    const { server } = await start();
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`ws://127.0.0.1:${server.port}/v1`);
    expect(server.httpUrl).toBe(`http://127.0.0.1:${server.port}`);
  });

  it('rejects when the port is taken, closing the store it was given', async () => {
    const { server } = await start();
    const stub = createStubStore();
    await expect(createLockServer({ port: server.port, store: stub.store })).rejects.toThrow(/EADDRINUSE/);
    expect(stub.calls.filter((c) => c.method === 'close')).toHaveLength(1);
  });

  it('rejects limits that are not positive integers', async () => {
    await expect(createLockServer({ port: 0, limits: { maxKeyLength: 0 } })).rejects.toThrow(/maxKeyLength/);
    await expect(createLockServer({ port: 0, limits: { maxPayload: 1.5 } })).rejects.toThrow(/maxPayload/);
  });
});
