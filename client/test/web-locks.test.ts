import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockError, type LockClient } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import {
  abortedWith,
  holding,
  nextEvent,
  recordingTransport,
  releaseWatchingTransport,
  startHarness,
  within,
  type Harness,
} from './fixtures.js';

let h: Harness;
let proxy: TcpProxy;
let alice: LockClient;
let bob: LockClient;

beforeEach(async () => {
  h = await startHarness();
  proxy = await startTcpProxy(h.server.port);
  alice = await h.connectTo(proxy.url(h.server.url), { reconnect: { initialDelay: 1, jitter: 0 } });
  bob = await h.connect();
});
afterEach(async () => {
  await h.close();
  await proxy.close();
});

describe('client.locks beyond one browser', () => {
  it('the granted Lock carries the fencing token the server shows', async () => {
    const { lock, done } = await holding(alice, 'doc:1', new Promise(() => undefined));
    expect(lock).toMatchObject({ name: 'doc:1', mode: 'exclusive' });
    expect((await bob.status('doc:1')).holders[0]?.token).toBe(lock?.token);
    void done;
  });

  it('a revoke rejects the holder request with an AbortError', async () => {
    const { done } = await holding(alice, 'doc:2', new Promise(() => undefined));
    expect(await bob.revoke('doc:2')).toBe(1);
    const error = await within(done);
    expect(error).toBeInstanceOf(DOMException);
    expect(error).toMatchObject({ name: 'AbortError' });
  });

  it('a dropped connection rejects the held request with connection_lost, the request waiting behind it in the client queue is granted after the reconnect, and new requests work', async () => {
    const { done } = await holding(alice, 'doc:3', new Promise(() => undefined));
    const waiting = alice.locks.request('doc:3', (lock) => lock?.name).catch((error: unknown) => error);
    const reconnected = nextEvent(alice, 'reconnect');
    proxy.cut();
    const outcome = await within(done);
    expect(outcome).toBeInstanceOf(LockError);
    expect(outcome).toMatchObject({ code: 'connection_lost' });
    await reconnected;
    expect(await within(waiting)).toBe('doc:3');
    expect(await alice.locks.request('doc:3', (lock) => lock?.name)).toBe('doc:3');
    expect((await alice.locks.query()).held).toEqual([]);
  });
});

describe('client.locks: a steal of the same client', () => {
  /** A client whose requests' `queued` frames resolve `queued()`, one per call. */
  async function watchingQueue() {
    const waiters: (() => void)[] = [];
    const { transport } = recordingTransport((frame) => {
      if (frame.type === 'queued') waiters.shift()?.();
    });
    const client = await h.connect({ transport });
    const queued = () => within(new Promise<void>((resolve) => waiters.push(resolve)), 2000, 'a queued frame');
    return { client, queued };
  }

  it('a request whose signal aborts while a steal takes it back off the server queue rejects with signal.reason and is never granted', async () => {
    await bob.acquire('x');
    const { client: carol, queued } = await watchingQueue();
    const controller = new AbortController();
    let called = false;
    const isQueued = queued();
    const first = carol.locks
      .request('x', { signal: controller.signal }, () => {
        called = true;
      })
      .catch((error: unknown) => error);
    await isQueued;
    // The steal cancels the queued acquire so that the request keeps its place; the caller gives up meanwhile.
    const steal = carol.locks.request('x', { steal: true }, () => 'stolen');
    const reason = new Error('gave up');
    controller.abort(reason);
    expect(await within(steal)).toBe('stolen');
    expect(await within(first)).toBe(reason);
    expect(called).toBe(false);
    expect(await carol.locks.query()).toEqual({ held: [], pending: [] });
    expect((await bob.status('x')).locked).toBe(false);
  });

  it('a steal gets a new, larger fencing token than the robbed holder of the same client, whose request rejects with an AbortError', async () => {
    const robbed = await holding(bob, 'f', new Promise(() => undefined));
    const oldToken = robbed.lock?.token ?? 0;
    const stolen = await within(bob.locks.request('f', { steal: true }, async (lock) => {
      expect((await alice.status('f')).holders.map((holder) => holder.token)).toEqual([lock?.token]);
      return lock?.token ?? 0;
    }));
    // The robbed callback may still write with the old token: a resource that fences by token can refuse it now.
    expect(stolen).toBeGreaterThan(oldToken);
    const error = await within(robbed.done);
    expect(error).toBeInstanceOf(DOMException);
    expect(error).toMatchObject({ name: 'AbortError' });
    expect((await alice.status('f')).locked).toBe(false);
  });

  it('a steal takes the lock from another session that was granted it while the client handed its own hold back', async () => {
    const robbed = await holding(bob, 'g', new Promise(() => undefined));
    let queued!: () => void;
    const isQueued = new Promise<void>((resolve) => (queued = resolve));
    const waiting = alice.acquire('g', { onQueued: () => queued() });
    await within(isQueued);
    const stealerToken = await within(bob.locks.request('g', { steal: true }, (lock) => lock?.token ?? 0));
    // Bob's release granted alice's queued acquire; the steal then took it from her.
    const lease = await within(waiting);
    expect(await abortedWith(lease?.signal ?? AbortSignal.abort())).toMatchObject({ code: 'stolen' });
    expect(stealerToken).toBeGreaterThan(lease?.token ?? Infinity);
    expect(await within(robbed.done)).toMatchObject({ name: 'AbortError' });
  });
});

describe('client.locks when the server refuses a release', () => {
  it('request() settles with the callback result, and the hold is released again until the server accepts', async () => {
    // One frame per session, then one more per ms of the manual clock: the release after the acquire is refused.
    const limited = await startHarness({ limits: { rateLimit: 1000, rateBurst: 1 } });
    try {
      const { transport, released } = releaseWatchingTransport();
      const carol = await limited.connect({ transport });
      const dave = await limited.connect();

      expect(await within(carol.locks.request('w', () => 'done'))).toBe('done');
      // Refused: the session still holds w, and the client says so rather than forgetting it.
      expect(carol.leases.get('w')?.held).toBe(true);
      expect((await dave.status('w')).holders.map((holder) => holder.session)).toEqual([carol.session]);

      const accepted = released();
      limited.clock.advance(1000);
      await accepted;
      expect(carol.leases.size).toBe(0);
      expect((await dave.status('w')).locked).toBe(false);
    } finally {
      await limited.close();
    }
  });

  it('a steal the server refuses over an exclusive hold of the client rejects with the refusal and leaves the holder holding', async () => {
    // The acquire takes the one frame of the burst: the steal's acquire is refused.
    const limited = await startHarness({ limits: { rateLimit: 1000, rateBurst: 1 } });
    try {
      const carol = await limited.connect();
      const dave = await limited.connect();
      let settled = false;
      const robbed = await holding(carol, 'u', new Promise(() => undefined));
      void robbed.done.finally(() => (settled = true));

      const steal = carol.locks.request('u', { steal: true }, () => 'stolen');
      await expect(within(steal)).rejects.toMatchObject({ name: 'LockError', code: 'rate_limited' });
      const { holders } = await dave.status('u');
      expect(holders.map(({ session, token }) => ({ session, token }))).toEqual([
        { session: carol.session, token: robbed.lock?.token },
      ]);
      expect(settled).toBe(false);
    } finally {
      await limited.close();
    }
  });
});
