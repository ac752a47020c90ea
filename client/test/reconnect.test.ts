import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLockServer } from '@lockwire/server';
import { LockClient, LockError, type ClientState, type CloseInfo } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { abortedWith, fastReconnect, nextEvent, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let proxy: TcpProxy;
let observer: LockClient;

beforeEach(async () => {
  h = await startHarness();
  proxy = await startTcpProxy(h.server.port);
  observer = await h.connect();
});
afterEach(async () => {
  await h.close();
  await proxy.close();
});

/** A client connected through the proxy, recording its state changes. */
async function connectThroughProxy(reconnect: Record<string, number> | false = {}) {
  const client = await h.connectTo(proxy.url(h.server.url), { reconnect: reconnect && { ...fastReconnect, ...reconnect } });
  const states: ClientState[] = [];
  client.on('state', (state) => states.push(state));
  return { client, states };
}

/**
 * Cuts the proxy's connections and checks that `client` (connected through
 * it, `states` its recorded state changes) ends there rather than
 * reconnecting: after its `close` and a round trip elsewhere (time for a
 * reconnect it wrongly started to show), its one state change was to
 * `closed`, the proxy took no new connection, and a request fails with
 * `connection_closed`. Resolves to the close info.
 */
async function cutEndsClient(client: LockClient, states: readonly ClientState[]): Promise<CloseInfo> {
  const closed = nextEvent(client, 'close');
  const accepted = proxy.accepted;
  proxy.cut();
  const info = await closed;
  await observer.ping();
  expect(states).toEqual(['closed']);
  expect(client.state).toBe('closed');
  expect(proxy.accepted).toBe(accepted);
  await expect(client.ping()).rejects.toMatchObject({ code: 'connection_closed', close: info });
  return info;
}

/** Resolves when `client` reaches `state` (bounded). */
function reaches(client: LockClient, state: ClientState, ms = 2000): Promise<void> {
  if (client.state === state) return Promise.resolve();
  return within(
    new Promise<void>((resolve) => {
      const off = client.on('state', (next) => {
        if (next !== state) return;
        off();
        resolve();
      });
    }),
    ms,
    `the client to be ${state}`,
  );
}

describe('reconnect', () => {
  it('a cut connection aborts leases and pending calls with connection_lost, then reconnects and can lock again', async () => {
    const { client, states } = await connectThroughProxy();
    const lease = await client.acquire('doc:1');
    await observer.acquire('doc:2');
    const pending = client.acquire('doc:2').catch((error: unknown) => error);
    await client.ping();
    const disconnect = nextEvent(client, 'disconnect');
    const reconnected = nextEvent(client, 'reconnect');
    const oldSession = client.session;

    proxy.cut();
    expect(await abortedWith(lease?.signal ?? AbortSignal.abort())).toMatchObject({ code: 'connection_lost' });
    const error = await within(pending);
    expect(error).toBeInstanceOf(LockError);
    expect(error).toMatchObject({ code: 'connection_lost' });
    expect(await disconnect).toMatchObject({ byClient: false, reconnecting: true });
    expect(lease?.held).toBe(false);

    expect(await reconnected).toMatchObject({ previousSession: oldSession, resumed: false, attempts: 1 });
    expect(states).toEqual(['reconnecting', 'connecting', 'open']);
    expect(client.session).not.toBe(oldSession);
    // The server released the old session's lock; the new session locks like any other.
    expect((await observer.status('doc:1')).locked).toBe(false);
    const again = await client.acquire('doc:1', { acquireTimeout: 0 });
    expect(again?.held).toBe(true);
    expect((await observer.status('doc:1')).holders[0]?.session).toBe(client.session);
  });

  it('calls made while reconnecting reject at once with connection_lost', async () => {
    const { client } = await connectThroughProxy();
    proxy.block();
    proxy.cut();
    await reaches(client, 'reconnecting');
    await expect(client.ping()).rejects.toMatchObject({ code: 'connection_lost' });
    await expect(client.acquire('doc:3')).rejects.toMatchObject({ code: 'connection_lost' });
  });

  it('keeps trying while the server is unreachable and connects once it is back', async () => {
    const { client, states } = await connectThroughProxy();
    proxy.block();
    proxy.cut();
    const before = proxy.accepted;
    // Three refused attempts, then the way is open again.
    await within(
      new Promise<void>((resolve) => {
        const off = client.on('state', () => {
          if (proxy.accepted - before < 3) return;
          off();
          resolve();
        });
      }),
    );
    proxy.unblock();
    await reaches(client, 'open');
    expect(states.slice(0, 6)).toEqual(['reconnecting', 'connecting', 'reconnecting', 'connecting', 'reconnecting', 'connecting']);
    expect(states.at(-1)).toBe('open');
    expect(await client.ping()).toBe(h.clock.now());
  });

  it('gives up after maxAttempts and closes for good', async () => {
    const { client } = await connectThroughProxy({ maxAttempts: 2 });
    const closed = nextEvent(client, 'close');
    proxy.block();
    proxy.cut();
    const info = await closed;
    expect(info).toMatchObject({ byClient: false });
    expect(client.state).toBe('closed');
    // The client ended with the drop after which it gave up, and its calls say so.
    await expect(client.ping()).rejects.toMatchObject({ code: 'connection_closed', close: info });
  });

  it('with reconnect: false the first drop closes the client', async () => {
    const { client } = await connectThroughProxy(false);
    const lease = await client.acquire('doc:4');
    const closed = nextEvent(client, 'close');
    proxy.cut();
    expect(await closed).toMatchObject({ byClient: false });
    expect(lease?.signal.reason).toMatchObject({ code: 'connection_lost' });
    expect(client.state).toBe('closed');
  });

  it('with reconnect: false, a call after the drop rejects with connection_closed whose close is the drop', async () => {
    const { client } = await connectThroughProxy(false);
    const closed = nextEvent(client, 'close');
    proxy.cut();
    const info = await closed;
    expect(info).toMatchObject({ code: 1006, byClient: false });
    for (const call of [client.ping(), client.acquire('doc:5'), client.locks.request('doc:5', () => 1)]) {
      const error = await within(call.catch((e: unknown) => e));
      expect(error).toBeInstanceOf(LockError);
      expect(error).toMatchObject({ code: 'connection_closed' });
      expect((error as LockError).close).toEqual(info);
    }
  });

  it("with reconnect: false, a lease's abort listener that calls close() on the drop gets one 'close', with the drop's close info", async () => {
    const { client } = await connectThroughProxy(false);
    const lease = await client.acquire('doc:6');
    lease?.signal.addEventListener('abort', () => void client.close());
    const closes: CloseInfo[] = [];
    client.on('close', (info) => closes.push(info));
    const closed = nextEvent(client, 'close');
    proxy.cut();
    await closed;
    await observer.ping();
    expect(closes).toEqual([expect.objectContaining({ code: 1006, byClient: false })]);
    expect(client.state).toBe('closed');
  });

  it("with reconnect: false, a disconnect listener that calls close() gets one 'close', with the drop's close info", async () => {
    const { client } = await connectThroughProxy(false);
    const lease = await client.acquire('doc:7');
    client.on('disconnect', () => void client.close());
    const closes: CloseInfo[] = [];
    client.on('close', (info) => closes.push(info));
    const closed = nextEvent(client, 'close');
    proxy.cut();
    await closed;
    await observer.ping();
    expect(closes).toEqual([expect.objectContaining({ code: 1006, byClient: false })]);
    expect(lease?.signal.reason).toMatchObject({ code: 'connection_lost' });
    expect(client.state).toBe('closed');
    await expect(client.close()).resolves.toBeUndefined();
  });

  it('close() while reconnecting stops reconnecting and closes for good', async () => {
    const { client } = await connectThroughProxy({ initialDelay: 60_000, maxDelay: 60_000 });
    const closed = nextEvent(client, 'close');
    proxy.cut();
    await reaches(client, 'reconnecting');
    const accepted = proxy.accepted;
    await client.close();
    expect(await closed).toMatchObject({ byClient: true });
    expect(client.state).toBe('closed');
    expect(proxy.accepted).toBe(accepted);
    await expect(client.ping()).rejects.toMatchObject({ code: 'connection_closed' });
  });

  it('close() called by a disconnect listener leaves the client closed, with no reconnect attempt', async () => {
    const { client, states } = await connectThroughProxy();
    client.on('disconnect', () => void client.close());
    expect(await cutEndsClient(client, states)).toMatchObject({ byClient: true });
  });

  it("close() called by a lease signal's abort listener on a drop leaves the client closed, with no reconnect attempt", async () => {
    const { client, states } = await connectThroughProxy();
    const lease = await client.acquire('doc:5');
    lease?.signal.addEventListener('abort', () => void client.close());
    await cutEndsClient(client, states);
  });

  it('close() called by a state listener as the reconnect opens ends the client without reporting the reconnect', async () => {
    const { client, states } = await connectThroughProxy();
    const reconnects: unknown[] = [];
    client.on('reconnect', (info) => reconnects.push(info));
    client.on('state', (state) => {
      if (state === 'open') void client.close();
    });
    const closed = nextEvent(client, 'close');
    proxy.cut();
    expect(await closed).toMatchObject({ byClient: true });
    await observer.ping();
    expect(states).toEqual(['reconnecting', 'connecting', 'open', 'closed']);
    expect(reconnects).toEqual([]);
    expect(client.state).toBe('closed');
  });

  it('watches are re-established after a reconnect: onResync gets a fresh snapshot, then events flow again', async () => {
    const { client } = await connectThroughProxy();
    const events: string[] = [];
    let resynced!: (keys: string[]) => void;
    const resync = new Promise<string[]>((resolve) => (resynced = resolve));
    const watch = await client.watch('doc:', (event) => events.push(`${event.event} ${event.key}`), {
      onResync: (snapshot) => resynced(snapshot.locks.map((lock) => lock.key)),
    });
    expect(watch.snapshot.locks).toEqual([]);
    proxy.block();
    proxy.cut();
    await reaches(client, 'reconnecting');
    // Changes while offline reach the watch as the resync snapshot, not as events.
    await observer.acquire('doc:offline');
    proxy.unblock();
    expect(await within(resync)).toEqual(['doc:offline']);
    expect(watch.snapshot.locks.map((lock) => lock.key)).toEqual(['doc:offline']);
    expect(watch.signal.aborted).toBe(false);

    await observer.acquire('doc:online');
    await client.ping();
    expect(events).toEqual(['acquired doc:online']);
  });
});

describe('resume against a server with session grace', () => {
  it('a cut connection resumes the same session and keeps its leases held, un-aborted', async () => {
    const graceful = await createLockServer({ port: 0, heartbeatInterval: 0, sessionGrace: 30_000 });
    const gracefulProxy = await startTcpProxy(graceful.port);
    const client = await LockClient.connect(gracefulProxy.url(graceful.url), { reconnect: fastReconnect });
    const other = await LockClient.connect(graceful.url, { reconnect: false });
    try {
      const lease = await client.acquire('doc:kept');
      const session = client.session;
      const reconnected = nextEvent(client, 'reconnect');
      gracefulProxy.cut();
      expect(await reconnected).toEqual({ session, previousSession: session, resumed: true, attempts: 1 });
      expect(lease?.held).toBe(true);
      expect(lease?.signal.aborted).toBe(false);
      expect((await other.status('doc:kept')).holders.map((h) => [h.session, h.token])).toEqual([
        [session, lease?.token],
      ]);
      // Still this session's lock: releasing it through the lease frees it on the server.
      await lease?.release();
      expect((await other.status('doc:kept')).locked).toBe(false);
    } finally {
      await client.close();
      await other.close();
      await gracefulProxy.close();
      await graceful.close();
    }
  });

  it('close() during the reconnect delay resumes the session and closes it, so the server releases its locks at once', async () => {
    const g = await startHarness({ sessionGrace: 30_000 });
    const gproxy = await startTcpProxy(g.server.port);
    try {
      const client = await g.connectTo(gproxy.url(g.server.url), { reconnect: { initialDelay: 60_000, maxDelay: 60_000 } });
      const other = await g.connect();
      const lease = await client.acquire('doc:ended');
      const waiting = other.acquire('doc:ended');
      await other.ping();
      const down = nextEvent(client, 'disconnect');
      gproxy.cut();
      await down;
      const accepted = gproxy.accepted;
      await within(client.close());
      expect(lease?.signal.reason).toMatchObject({ code: 'connection_lost' });
      expect(gproxy.accepted).toBe(accepted + 1);
      // The server's clock stands still: only the ended session can have let the lock go.
      expect((await within(waiting))?.held).toBe(true);
      expect((await other.status('doc:ended')).holders.map((holder) => holder.session)).toEqual([other.session]);
    } finally {
      await g.close();
      await gproxy.close();
    }
  });

  it('close() during the reconnect delay gives up ending the session once the rest of the grace is over, and the grace then releases the locks', async () => {
    const g = await startHarness({ sessionGrace: 400 });
    const gproxy = await startTcpProxy(g.server.port);
    try {
      const client = await g.connectTo(gproxy.url(g.server.url), { reconnect: { initialDelay: 60_000, maxDelay: 60_000 } });
      const other = await g.connect();
      const lease = await client.acquire('doc:silent');
      const down = nextEvent(client, 'disconnect');
      gproxy.cut();
      await down;
      // The attempt reaches the proxy and goes no further.
      gproxy.hold();
      const accepted = gproxy.accepted;
      await within(client.close(), 1500, 'close() to give up within the rest of the grace');
      expect(lease?.signal.reason).toMatchObject({ code: 'connection_lost' });
      expect(client.state).toBe('closed');
      expect(gproxy.accepted).toBe(accepted + 1);
      expect((await other.status('doc:silent')).holders.map((holder) => holder.session)).toEqual([client.session]);
      g.clock.advance(400);
      expect(await within(other.wait('doc:silent'))).toBe(true);
    } finally {
      await g.close();
      await gproxy.close();
    }
  });
});
