import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import { LockClient, type ConnectOptions } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { abortedWith, fastReconnect, nextEvent, recordingTransport, startHarness, within } from './fixtures.js';

let server: LockServer;
let proxy: TcpProxy;
const clients: LockClient[] = [];

/** Keepalive settings matched to the test server's 100 ms heartbeat, as the defaults are to the server's. */
const quickKeepalive = { interval: 100, timeout: 100 };

beforeEach(async () => {
  server = await createLockServer({ port: 0, heartbeatInterval: 100 });
  proxy = await startTcpProxy(server.port);
});
afterEach(async () => {
  await proxy.close();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await server.close();
});

async function connect(url: string, options: ConnectOptions = {}): Promise<LockClient> {
  const client = await LockClient.connect(url, options);
  clients.push(client);
  return client;
}

describe('half-open connection', () => {
  it('a holder whose path went silent learns its lease is lost once the server cut it and granted the key to another', async () => {
    const holder = await connect(proxy.url(server.url), { reconnect: fastReconnect, keepalive: quickKeepalive });
    const other = await connect(server.url);
    const lease = await holder.acquire('job');
    proxy.hold();
    // The server's heartbeat cuts the silent holder and grants the key to the waiter.
    const granted = await within(other.acquire('job'), 3000, 'the waiter to be granted');
    expect(granted?.held).toBe(true);
    expect(await abortedWith(lease!.signal, 3000)).toMatchObject({ code: 'connection_lost' });
    expect(holder.leases.has('job')).toBe(false);
  }, 10_000);

  it('a request sent on a silent path rejects with connection_lost, and the disconnect reports an abnormal close the client will reconnect from', async () => {
    const client = await connect(proxy.url(server.url), { reconnect: fastReconnect, keepalive: quickKeepalive });
    proxy.hold();
    const disconnected = nextEvent(client, 'disconnect', 3000);
    await expect(within(client.status('job'), 3000, 'the request to settle')).rejects.toMatchObject({
      code: 'connection_lost',
    });
    expect(await disconnected).toMatchObject({ code: 1006, byClient: false, reconnecting: true });
  }, 10_000);

  it('after the path comes back, the client reconnects and can lock again', async () => {
    const client = await connect(proxy.url(server.url), { reconnect: fastReconnect, keepalive: quickKeepalive });
    proxy.hold();
    await nextEvent(client, 'disconnect', 3000);
    const reconnected = nextEvent(client, 'reconnect', 3000);
    proxy.resume();
    await reconnected;
    expect(client.state).toBe('open');
    expect((await client.acquire('job'))?.held).toBe(true);
  }, 10_000);
});

describe('keepalive against a server with session grace', () => {
  it('a connection taken for dead keeps its leases for the resume, which gets them back once the path returns', async () => {
    // No server heartbeat: only the client notices the silence, and the server keeps the session.
    const h = await startHarness({ sessionGrace: 30_000 });
    const graceProxy = await startTcpProxy(h.server.port);
    try {
      const client = await h.connectTo(graceProxy.url(h.server.url), {
        reconnect: fastReconnect,
        keepalive: { interval: 50, timeout: 50 },
      });
      const lease = await client.acquire('doc:1');
      graceProxy.hold();
      expect(await nextEvent(client, 'disconnect', 3000)).toMatchObject({ reconnecting: true });
      expect(lease!.held).toBe(true);
      const reconnected = nextEvent(client, 'reconnect', 3000);
      graceProxy.resume();
      // The closing frame sent as the connection was given up reaches the server too: it must not end the session.
      expect(await reconnected).toMatchObject({ resumed: true });
      expect(lease!.held).toBe(true);
      expect(lease!.signal.aborted).toBe(false);
    } finally {
      await graceProxy.close();
      await h.close();
    }
  }, 10_000);
});

describe('healthy idle connection', () => {
  it('is kept open by answered keepalive pings, which leave the numbering of requests alone', async () => {
    const h = await startHarness();
    try {
      let answered!: () => void;
      const thirdAnswer = new Promise<void>((resolve) => (answered = resolve));
      let answers = 0;
      const { transport, sent } = recordingTransport((frame) => {
        if (frame.type === 'reply' && typeof frame.id === 'string' && ++answers === 3) answered();
      });
      // A timeout far above a loopback round trip: only a keepalive that ignored its answers would drop this.
      const client = await h.connect({ transport, keepalive: { interval: 20, timeout: 400 } });
      const disconnects: unknown[] = [];
      client.on('disconnect', (info) => disconnects.push(info));
      const lease = await client.acquire('doc:idle');
      // A keepalive that did not count an answer would drop the connection before it sent a second ping.
      await within(thirdAnswer, 3000, 'three answered keepalive pings');
      expect(await client.ping()).toBeTypeOf('number');
      expect(disconnects).toEqual([]);
      expect(client.state).toBe('open');
      expect(lease!.held).toBe(true);
      const keepalivePings = sent.filter((frame) => typeof frame.id === 'string');
      expect(keepalivePings.length).toBeGreaterThanOrEqual(3);
      expect(keepalivePings.every((frame) => frame.op === 'ping')).toBe(true);
      const ids = sent.filter((frame) => typeof frame.id === 'number').map((frame) => frame.id);
      expect(ids).toEqual([1, 2]);
    } finally {
      await h.close();
    }
  });

  it('a busy connection sends no keepalive ping: every frame from the server counts as a sign of life', async () => {
    // Round trips back to back would run into the default rate limit.
    const h = await startHarness({ limits: { rateLimit: 1_000_000, rateBurst: 1_000_000 } });
    try {
      const { transport, sent } = recordingTransport();
      const client = await h.connect({ transport, keepalive: { interval: 300, timeout: 300 } });
      // Round trips back to back, for longer than the interval.
      const started = performance.now();
      while (performance.now() - started < 700) await client.ping();
      expect(sent.filter((frame) => typeof frame.id === 'string')).toEqual([]);
    } finally {
      await h.close();
    }
  });
});

describe('keepalive options', () => {
  it.each([
    [{ interval: 0 }],
    [{ interval: 0.5 }],
    [{ timeout: -1 }],
    [{ interval: Number.NaN }],
    [{ timeout: Infinity }],
    [{ interval: 2 ** 31 }],
  ])('connect() rejects %o with a RangeError, opening no connection', async (keepalive) => {
    const accepted = proxy.accepted;
    await expect(LockClient.connect(proxy.url(server.url), { keepalive })).rejects.toBeInstanceOf(RangeError);
    // A round trip elsewhere: time for a connection that was wrongly opened to reach the proxy.
    await (await connect(server.url)).ping();
    expect(proxy.accepted).toBe(accepted);
  });

  it('a connect whose server sends no welcome fails with connection_closed within interval + timeout', async () => {
    proxy.hold();
    const connecting = LockClient.connect(proxy.url(server.url), { keepalive: { interval: 50, timeout: 50 } });
    await expect(within(connecting, 3000, 'connect to fail')).rejects.toMatchObject({ code: 'connection_closed', close: { code: 1006 } });
  });
});
