import { afterEach, describe, expect, it } from 'vitest';
import { LockError, type ConnectOptions, type LockClient } from '@lockwire/client';
import { createMemoryStore } from '@lockwire/server';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import {
  dropThrough,
  fastReconnect,
  gatedStore,
  holding,
  reconnectThrough,
  recordingTransport,
  startHarness,
  within,
  type Harness,
} from './fixtures.js';

let h: Harness;
let proxy: TcpProxy | undefined;
afterEach(async () => {
  await h.close();
  await proxy?.close();
  proxy = undefined;
});

/**
 * A client connected to `url` whose requests' `queued` frames resolve `queued()`, and whose granting replies
 * resolve `granted()`, one per call (once the client has read the frame); `sent` holds every frame it sent.
 */
async function watchingQueue(url: string, options: ConnectOptions = {}) {
  const waiters = { queued: [] as (() => void)[], granted: [] as (() => void)[] };
  const { transport, sent } = recordingTransport((frame) => {
    if (frame.type === 'queued') waiters.queued.shift()?.();
    if (frame.type === 'reply' && frame.acquired === true) waiters.granted.shift()?.();
  });
  const client = await h.connectTo(url, { ...options, transport });
  const next = (kind: keyof typeof waiters) =>
    within(new Promise<void>((resolve) => waiters[kind].push(resolve)), 2000, `a ${kind} frame`);
  return { client, sent, queued: () => next('queued'), granted: () => next('granted') };
}

/** A client that reconnects by itself, connected through a proxy in front of the harness's server. */
async function proxied() {
  proxy = await startTcpProxy(h.server.port);
  return watchingQueue(proxy.url(h.server.url), { reconnect: fastReconnect });
}

/** Cuts the client off behind the proxy; resolves once it noticed the drop (it keeps trying to reconnect). */
const drop = (client: LockClient) => dropThrough(proxy, client);
/** Lets the client reconnect; resolves with its `reconnect` event. */
const reconnect = (client: LockClient) => reconnectThrough(proxy, client);

/** The frames of `op` for `key` among `sent`, from index `from` on. */
function framesOf(sent: Record<string, unknown>[], op: string, key: string, from = 0): Record<string, unknown>[] {
  return sent.slice(from).filter((frame) => frame.op === op && frame.key === key);
}

/** A promise for `request`'s outcome: its value, or the error it rejected with. */
function outcome(request: Promise<unknown>): Promise<unknown> {
  return request.catch((error: unknown) => error);
}

describe('client.locks when the connection drops', () => {
  it('with session grace, a held request keeps the lock across the drop and the resume, and a request waiting in the server queue stays pending and is sent again once', async () => {
    h = await startHarness({ sessionGrace: 30_000 });
    const { client: alice, queued, sent } = await proxied();
    const bob = await h.connect();
    let end!: () => void;
    const { lock, done } = await holding(alice, 'doc:1', new Promise<void>((resolve) => (end = resolve)));
    const bobs = await bob.acquire('doc:2');
    const isQueued = queued();
    let callbacks = 0;
    const waiting = outcome(alice.locks.request('doc:2', (l) => (callbacks++, l?.name)));
    await isQueued;

    await drop(alice);
    const from = sent.length;
    const queuedAgain = queued();
    expect(await reconnect(alice)).toMatchObject({ resumed: true });
    await queuedAgain;
    expect(framesOf(sent, 'acquire', 'doc:2', from)).toHaveLength(1);
    expect((await bob.status('doc:1')).holders.map((holder) => holder.token)).toEqual([lock?.token]);
    end();
    expect(await within(done)).toBeUndefined();
    expect((await bob.status('doc:1')).locked).toBe(false);
    await bobs?.release();
    expect(await within(waiting)).toBe('doc:2');
    expect(callbacks).toBe(1);
  });

  it('without session grace, a request waiting in the server queue is sent again on the fresh session, behind a request another client made after it', async () => {
    h = await startHarness();
    const { client: alice, queued } = await proxied();
    const bob = await h.connect();
    const carol = await h.connect();
    const bobs = await bob.acquire('q');
    const order: string[] = [];
    const isQueued = queued();
    const waiting = outcome(alice.locks.request('q', () => void order.push('alice')));
    await isQueued;
    let carolQueued!: () => void;
    const carolIsQueued = new Promise<void>((resolve) => (carolQueued = resolve));
    const carols = carol.acquire('q', { onQueued: () => carolQueued() });
    await within(carolIsQueued);

    await drop(alice);
    const queuedAgain = queued();
    expect(await reconnect(alice)).toMatchObject({ resumed: false });
    await queuedAgain;
    expect((await bob.status('q')).queue.map((waiter) => waiter.session)).toEqual([carol.session, alice.session]);
    await bobs?.release();
    const carolsLease = await within(carols);
    expect(carolsLease?.held).toBe(true);
    order.push('carol');
    await carolsLease?.release();
    expect(await within(waiting)).toBeUndefined();
    expect(order).toEqual(['carol', 'alice']);
  });

  it("a request's signal aborts it while it waits for the reconnect, sending nothing for it, and the requests behind it in the client queue keep their order", async () => {
    h = await startHarness({ sessionGrace: 30_000 });
    const { client: alice, queued, sent } = await proxied();
    const bob = await h.connect();
    const bobs = await bob.acquire('o');
    const controller = new AbortController();
    const order: string[] = [];
    const isQueued = queued();
    const first = outcome(alice.locks.request('o', { mode: 'shared', signal: controller.signal }, () => 'never'));
    const second = outcome(alice.locks.request('o', () => void order.push('second')));
    const third = outcome(alice.locks.request('o', { mode: 'shared' }, () => void order.push('third')));
    await isQueued;

    await drop(alice);
    const reason = new Error('gave up');
    controller.abort(reason);
    expect(await within(first)).toBe(reason);
    expect(alice.state).not.toBe('open');
    const from = sent.length;
    const queuedAgain = queued();
    expect(await reconnect(alice)).toMatchObject({ resumed: true });
    await queuedAgain;
    // Only the second request's acquire (exclusive) went out: nothing for the aborted shared one.
    expect(framesOf(sent, 'acquire', 'o', from).map((frame) => frame.mode ?? 'exclusive')).toEqual(['exclusive']);
    await bobs?.release();
    expect([await within(second), await within(third)]).toEqual([undefined, undefined]);
    expect(order).toEqual(['second', 'third']);
  });

  it('an ifAvailable request whose answer the drop lost is asked again once after the reconnect, and gets null when another client took the lock meanwhile', async () => {
    const { store, holdNextAcquire } = gatedStore(createMemoryStore());
    h = await startHarness({ store });
    const { client: alice, sent } = await proxied();
    const bob = await h.connect();
    const gate = holdNextAcquire();
    const asked = outcome(alice.locks.request('i', { ifAvailable: true }, (lock) => lock?.name ?? null));
    await gate.ran; // the server granted it; the reply waits, and the drop loses it
    await drop(alice);
    gate.open();
    // Without session grace, alice's session ended with the drop, and its grant with it.
    const bobs = await within(bob.acquire('i', { acquireTimeout: 2000 }));
    expect(bobs?.held).toBe(true);

    const from = sent.length;
    expect(await reconnect(alice)).toMatchObject({ resumed: false });
    expect(await within(asked)).toBeNull();
    expect(framesOf(sent, 'acquire', 'i', from)).toHaveLength(1);
  });

  it('under session grace, a request whose grant the drop lost asks again after the resume, once the hold the resume gave back is released, and is called back once', async () => {
    const { store, holdNextAcquire } = gatedStore(createMemoryStore());
    h = await startHarness({ store, sessionGrace: 30_000 });
    const { client: alice, sent } = await proxied();
    const bob = await h.connect();
    const gate = holdNextAcquire();
    let callbacks = 0;
    const asked = outcome(alice.locks.request('g', (lock) => (callbacks++, lock?.token)));
    await gate.ran;
    await drop(alice);
    gate.open();

    const from = sent.length;
    expect(await reconnect(alice)).toMatchObject({ resumed: true });
    expect(typeof (await within(asked))).toBe('number');
    expect(callbacks).toBe(1);
    // The kept hold no lease stands for is released before the request asks again; then its own hold is released.
    expect(sent.slice(from).filter((frame) => frame.key === 'g').map((frame) => frame.op)).toEqual([
      'release',
      'acquire',
      'release',
    ]);
    expect((await bob.status('g')).locked).toBe(false);
  });

  it('without session grace, a request granted as the connection dropped, whose callback waited for an earlier request, asks again after the reconnect', async () => {
    const { store, holdNextAcquire } = gatedStore(createMemoryStore());
    h = await startHarness({ store });
    const { client: alice, granted } = await proxied();
    const order: string[] = [];
    const gate = holdNextAcquire();
    const first = outcome(alice.locks.request('a', () => void order.push('a')));
    await gate.ran; // granted by the server; its reply waits
    const isGranted = granted();
    const second = outcome(alice.locks.request('b', () => void order.push('b')));
    // The grant of `b` is in, and its callback waits for the request of `a`, made before it, to be decided.
    await isGranted;
    expect(order).toEqual([]);

    await drop(alice);
    gate.open();
    expect(await reconnect(alice)).toMatchObject({ resumed: false });
    expect([await within(first), await within(second)]).toEqual([undefined, undefined]);
    expect(order).toEqual(['a', 'b']);
  });

  it('a steal in flight at the drop rejects with connection_lost, while a request waiting in the server queue beside it is sent again', async () => {
    const { store, holdNextAcquire } = gatedStore(createMemoryStore());
    h = await startHarness({ store, sessionGrace: 30_000 });
    const { client: alice, queued } = await proxied();
    const bob = await h.connect();
    const bobs = await bob.acquire('p');
    const isQueued = queued();
    const waiting = outcome(alice.locks.request('p', (lock) => lock?.name));
    await isQueued;
    const gate = holdNextAcquire();
    const stealing = outcome(alice.locks.request('s', { steal: true }, () => 'stolen'));
    await gate.ran; // the server may have carried it out: it is not asked again

    await drop(alice);
    gate.open();
    const stolen = await within(stealing);
    expect(stolen).toBeInstanceOf(LockError);
    expect(stolen).toMatchObject({ code: 'connection_lost' });
    expect(await reconnect(alice)).toMatchObject({ resumed: true });
    await bobs?.release();
    expect(await within(waiting)).toBe('p');
  });

  it('a request waiting for the reconnect after the drop dropped its acquire rejects with connection_closed when the client closes for good', async () => {
    h = await startHarness({ sessionGrace: 30_000 });
    const { client: alice, queued } = await proxied();
    const bob = await h.connect();
    await bob.acquire('c');
    const isQueued = queued();
    const waiting = outcome(alice.locks.request('c', () => 'never'));
    await isQueued;

    await drop(alice);
    await alice.close();
    const error = await within(waiting);
    expect(error).toBeInstanceOf(LockError);
    expect(error).toMatchObject({ code: 'connection_closed' });
  });

  it('on a server drain, a held request rejects with connection_lost and a request waiting in the server queue with shutting_down', async () => {
    h = await startHarness();
    const bob = await h.connect();
    const { client: alice, queued } = await watchingQueue(h.server.url, { reconnect: false });
    const { done } = await holding(alice, 'doc:3', new Promise(() => undefined));
    await bob.acquire('doc:4');
    const isQueued = queued();
    const waiting = outcome(alice.locks.request('doc:4', () => 'never'));
    await isQueued;

    const closing = h.server.close();
    const [held, queuedOutcome] = [await within(done), await within(waiting)];
    expect(held).toBeInstanceOf(LockError);
    expect(held).toMatchObject({ code: 'connection_lost', close: { code: 1001 } });
    expect(queuedOutcome).toBeInstanceOf(LockError);
    expect(queuedOutcome).toMatchObject({ code: 'shutting_down' });
    await closing;
  });
});
