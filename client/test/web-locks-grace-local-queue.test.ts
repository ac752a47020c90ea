import { afterEach, describe, expect, it } from 'vitest';
import type { LockClient } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { dropThrough, fastReconnect, holding, reconnectThrough, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let proxy: TcpProxy | undefined;
afterEach(async () => {
  await h?.close();
  await proxy?.close();
  proxy = undefined;
});

/** A client connected through a proxy that the test can cut off and let through again. */
async function proxied(options: Parameters<typeof startHarness>[0] = {}): Promise<LockClient> {
  h = await startHarness(options);
  proxy = await startTcpProxy(h.server.port);
  return h.connectTo(proxy.url(h.server.url), { reconnect: fastReconnect });
}

/** Cuts the client off behind the proxy; resolves once it noticed the drop (it keeps trying to reconnect). */
const drop = (client: LockClient) => dropThrough(proxy, client);
/** Lets the client reconnect; resolves with its `reconnect` event. */
const reconnect = (client: LockClient) => reconnectThrough(proxy, client);

/** Holds `name` on `client` until the returned `end` is called. */
async function held(client: LockClient, name: string) {
  let end!: () => void;
  const { done } = await holding(client, name, new Promise<void>((resolve) => (end = resolve)));
  return { end, done };
}

describe('client.locks: requests waiting in the client queue across a drop', () => {
  it('under session grace, a request queued behind its own holder is granted after the resume when the holder ends during the drop', async () => {
    const alice = await proxied({ sessionGrace: 30_000 });
    const { end, done } = await held(alice, 'x');
    // Never sent to the server: it waits behind alice's own holder in the client queue.
    const next = alice.locks.request('x', (lock) => lock?.name).catch((error: unknown) => error);
    await drop(alice);
    end(); // the holder's callback settles during the drop; the session (and its hold) is kept by the grace
    expect(await within(done)).toBeUndefined();
    expect(await reconnect(alice)).toMatchObject({ resumed: true });
    expect(await within(next)).toBe('x');
  });

  it('under session grace, a request behind one waiting in the server queue outlives the drop along with that one, and both are granted in order after the resume', async () => {
    const alice = await proxied({ sessionGrace: 30_000 });
    const bob = await h.connect();
    const bobs = await bob.acquire('y');
    let queued!: () => void;
    const isQueued = new Promise<void>((resolve) => (queued = resolve));
    const unwatch = await bob.watch('y', (event) => event.event === 'queued' && queued());
    const order: string[] = [];
    const first = alice.locks.request('y', () => void order.push('first')).catch((error: unknown) => error);
    const second = alice.locks.request('y', (lock) => void order.push(`second:${lock?.name}`)).catch((error: unknown) => error);
    await within(isQueued);
    await unwatch.close();
    await drop(alice);
    expect(await reconnect(alice)).toMatchObject({ resumed: true });
    await bobs?.release();
    expect([await within(first), await within(second)]).toEqual([undefined, undefined]);
    expect(order).toEqual(['first', 'second:y']);
  });

  it('without session grace, the held request rejects with connection_lost and the request behind it is granted on the fresh session', async () => {
    const alice = await proxied();
    const { done } = await held(alice, 'z');
    const next = alice.locks.request('z', (lock) => lock?.name).catch((error: unknown) => error);
    await drop(alice);
    expect(await within(done)).toMatchObject({ code: 'connection_lost' });
    expect(await reconnect(alice)).toMatchObject({ resumed: false });
    expect(await within(next)).toBe('z');
    expect((await h.connect().then((carol) => carol.status('z'))).locked).toBe(false);
  });

  it('when the resume fails (the grace ran out on the server), the request behind the lost holder is granted on the fresh session', async () => {
    const alice = await proxied({ sessionGrace: 30_000 });
    const { done } = await held(alice, 'w');
    const next = alice.locks.request('w', (lock) => lock?.name).catch((error: unknown) => error);
    await drop(alice);
    h.clock.advance(31_000);
    expect(await reconnect(alice)).toMatchObject({ resumed: false });
    expect(await within(done)).toMatchObject({ code: 'connection_lost' });
    expect(await within(next)).toBe('w');
  });

  it('a request made while the client reconnects waits for the reconnect and is then granted', async () => {
    const alice = await proxied({ sessionGrace: 30_000 });
    await drop(alice);
    const made = alice.locks.request('v', (lock) => lock?.name).catch((error: unknown) => error);
    expect(await reconnect(alice)).toMatchObject({ resumed: true });
    expect(await within(made)).toBe('v');
  });

  it('an ifAvailable request made while the client reconnects is answered at once (connection_lost), not held for the reconnect', async () => {
    const alice = await proxied({ sessionGrace: 30_000 });
    await drop(alice);
    const asked = alice.locks.request('s', { ifAvailable: true }, (lock) => lock?.name).catch((error: unknown) => error);
    expect(await within(asked)).toMatchObject({ code: 'connection_lost' });
    expect(alice.state).not.toBe('open');
    expect(await reconnect(alice)).toMatchObject({ resumed: true });
    expect(await within(alice.locks.request('s', (lock) => lock?.name))).toBe('s');
  });

  it('an ifAvailable shared request whose turn comes while reconnecting, over this client\'s shared hold, rejects connection_lost rather than answering null on a guess', async () => {
    const alice = await proxied({ sessionGrace: 30_000 });
    let end!: () => void;
    const release = new Promise<void>((resolve) => (end = resolve));
    let granted!: () => void;
    const got = new Promise<void>((resolve) => (granted = resolve));
    const holder = alice.locks.request('r', { mode: 'shared' }, () => (granted(), release));
    await within(got);
    // Online, the same request shares the hold.
    expect(await within(alice.locks.request('r', { mode: 'shared', ifAvailable: true }, (lock) => lock?.name ?? 'null'))).toBe('r');
    await drop(alice);
    const asked = alice.locks.request('r', { mode: 'shared', ifAvailable: true }, (lock) => lock?.name ?? 'null').catch((error: unknown) => error);
    expect(await within(asked)).toMatchObject({ code: 'connection_lost' });
    end();
    await within(holder);
  });

  it('a request waiting in the client queue rejects with connection_closed when the client is closed during the drop', async () => {
    const alice = await proxied({ sessionGrace: 30_000 });
    const { end, done } = await held(alice, 'u');
    const next = alice.locks.request('u', () => 'never').catch((error: unknown) => error);
    await drop(alice);
    end();
    expect(await within(done)).toBeUndefined();
    await alice.close();
    expect(await within(next)).toMatchObject({ code: 'connection_closed' });
  });

  it("aborting a request waiting in the client queue during the drop rejects it at once with the signal's reason", async () => {
    const alice = await proxied({ sessionGrace: 30_000 });
    const { end, done } = await held(alice, 't');
    const controller = new AbortController();
    const next = alice.locks
      .request('t', { signal: controller.signal }, () => 'never')
      .catch((error: unknown) => error);
    await drop(alice);
    end();
    expect(await within(done)).toBeUndefined();
    const reason = new Error('gave up');
    controller.abort(reason);
    expect(await within(next)).toBe(reason);
    expect(alice.state).not.toBe('open');
  });
});
