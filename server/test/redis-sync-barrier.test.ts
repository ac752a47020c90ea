import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BatchSequencer } from '../src/redis/batch-sequencer.js';
import type { StoreContext } from '../src/redis/store-context.js';
import { SyncBarrier } from '../src/redis/sync-barrier.js';

/** A barrier over a fake link whose PUBLISH answers as `publish` says for the nth marker. */
function barrier(options: {
  mode: 'single' | 'cluster';
  /** Receivers PUBLISH counts for marker n; a negative number fails the command. */
  publish: (n: number) => number | Promise<number>;
  timeout?: number;
  sequencer?: Pick<BatchSequencer, 'heard'>;
  /** The store's `settled` (no reconciliation under way) beside the count of calls. */
  settled?: () => Promise<void>;
  /** A cluster's primaries. Default 3. */
  primaries?: number;
}) {
  const published: number[] = [];
  const command = async (_key: string | undefined, args: string[]) => {
    const n = Number(String(args[2]).split(' ')[1]);
    published.push(n);
    const receivers = await options.publish(n);
    if (receivers < 0) throw new Error('the command timed out');
    return receivers;
  };
  const link = {
    mode: options.mode,
    command,
    shards: async () =>
      Array.from({ length: options.primaries ?? 3 }, (_, i) => ({
        address: `127.0.0.1:${7000 + i}`,
        command: (args: string[]) => command(undefined, args),
      })),
  };
  let settled = 0;
  const ctx = {
    link,
    liveness: { id: 'n1' },
    sequencer: options.sequencer ?? { heard: async () => {} },
    names: { nodeChannel: (id: string) => `lw:n:${id}` },
    closing: null,
  } as unknown as StoreContext;
  const sync = new SyncBarrier({
    ctx,
    timeout: options.timeout ?? 5000,
    settled: async () => {
      settled++;
      await options.settled?.();
    },
  });
  return { sync, published, settledCalls: () => settled };
}

/** Tracks whether a promise has settled, checked after every pending callback ran. */
function track(promise: Promise<void>) {
  const state = { done: false };
  void promise.then(() => (state.done = true));
  return state;
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Fakes the barrier's time: its timers and `performance.now()`, which read
 * the faked `Date`. `setImmediate` stays real, so `turns` still runs the
 * barrier's own turns. Undone after each test.
 */
function fakeTime() {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  vi.spyOn(performance, 'now').mockImplementation(() => Date.now());
  const start = Date.now();
  return {
    elapsed: () => Date.now() - start,
    /** Moves time to `at` ms after the start in 10 ms steps, letting the barrier run its turns after each. */
    async advanceTo(at: number) {
      while (Date.now() - start < at) {
        vi.advanceTimersByTime(Math.min(10, at - (Date.now() - start)));
        await turns();
      }
    },
  };
}

/** A few turns of the event loop: a marker is formed, published and its reply read. */
async function turns() {
  for (let i = 0; i < 5; i++) await turn();
}

/** Marker `n` comes back; every sync in `waiting` must then be done. */
async function markerBack(sync: SyncBarrier, n: number, ...waiting: Array<{ done: boolean }>) {
  sync.pass(n);
  await turns();
  await turns();
  for (const state of waiting) expect(state.done).toBe(true);
}

describe('the Redis sync barrier', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });

  it('passes a sync once its marker comes back, after the reconciliation under way settled', async () => {
    const { sync, published, settledCalls } = barrier({ mode: 'single', publish: () => 1 });
    const first = track(sync.sync(() => true));
    await turns();
    expect(published).toEqual([1]);
    expect(first.done).toBe(false);
    await markerBack(sync, 1, first);
    expect(settledCalls()).toBe(1);
  });

  it('does not pass an earlier sync whose marker is still on its way when a later marker could not be sent', async () => {
    const { sync, published } = barrier({ mode: 'single', publish: (n) => (n === 2 ? -1 : 1) });
    const first = track(sync.sync(() => true));
    await turns();
    const second = track(sync.sync(() => true));
    await turns();
    await turns();
    // Marker 2's PUBLISH failed: that says nothing of marker 1, still on its way.
    expect(published).toEqual([1, 2]);
    expect(first.done).toBe(false);
    expect(second.done).toBe(false);
    sync.resubscribed();
    await turns();
    // Both try again with one marker (marker 1 may have gone to the broken connection); its return passes both.
    expect(published).toEqual([1, 2, 3]);
    await markerBack(sync, 3, first, second);
  });

  it('on a Redis Cluster waits for the marker even when PUBLISH counted no subscriber on its shard', async () => {
    const { sync, published } = barrier({ mode: 'cluster', publish: () => 0, primaries: 1 });
    const first = track(sync.sync(() => true));
    await turns();
    await turns();
    expect(published).toEqual([1]);
    expect(first.done).toBe(false);
    await markerBack(sync, 1, first);
  });

  it('on a Redis Cluster publishes a copy of the marker on every primary and waits for every copy', async () => {
    const { sync, published } = barrier({ mode: 'cluster', publish: () => 1, primaries: 3 });
    const first = track(sync.sync(() => true));
    await turns();
    expect(published).toEqual([1, 1, 1]);
    // Each primary's notes come over a path of its own: two copies back say nothing of the third's.
    sync.pass(1);
    sync.pass(1);
    await turns();
    expect(first.done).toBe(false);
    await markerBack(sync, 1, first);
  });

  it("on a Redis Cluster counts each marker's own copies only", async () => {
    const { sync, published } = barrier({ mode: 'cluster', publish: () => 1, primaries: 2 });
    const first = track(sync.sync(() => true));
    await turns();
    const second = track(sync.sync(() => true));
    await turns();
    expect(published).toEqual([1, 1, 2, 2]);
    sync.pass(2);
    await markerBack(sync, 2, second);
    expect(first.done).toBe(false);
    sync.pass(1);
    await markerBack(sync, 1, first);
    // A late copy of a marker already settled moves nothing.
    const third = track(sync.sync(() => true));
    await turns();
    sync.pass(2);
    await turns();
    expect(third.done).toBe(false);
    await markerBack(sync, 3);
    expect(third.done).toBe(false);
    await markerBack(sync, 3, third);
  });

  it('on a single server sends the marker again once the pub/sub connection is back, when none heard it', async () => {
    const subscribed = { now: false };
    const { sync, published } = barrier({ mode: 'single', publish: () => (subscribed.now ? 1 : 0) });
    const first = track(sync.sync(() => true));
    await turns();
    expect(published).toEqual([1]);
    subscribed.now = true;
    sync.resubscribed();
    await turns();
    expect(published).toEqual([1, 2]);
    expect(first.done).toBe(false);
    await markerBack(sync, 2, first);
  });

  it('sends again a marker that was out when the pub/sub connection broke and came back', async () => {
    const { sync, published } = barrier({ mode: 'single', publish: () => 1 });
    const first = track(sync.sync(() => true));
    await turns();
    sync.resubscribed();
    await turns();
    expect(published).toEqual([1, 2]);
    await markerBack(sync, 2, first);
  });

  it('does not pass on a marker read together with the resubscription before the reconciliation that resubscription starts', async () => {
    const run: { under: Promise<void> | null; finish: () => void } = { under: null, finish: () => {} };
    const { sync, published } = barrier({
      mode: 'single',
      publish: () => 1,
      settled: async () => {
        while (run.under) await run.under;
      },
    });
    const first = track(sync.sync(() => true));
    await turns();
    expect(published).toEqual([1]);
    // One read brings the marker and the replies of the resubscription; the
    // connection is reported back a few promise jobs later, and that starts
    // the reconciliation of what the break missed.
    sync.pass(1);
    void (async () => {
      for (let i = 0; i < 20; i++) await null;
      run.under = new Promise<void>((resolve) => {
        run.finish = () => {
          run.under = null;
          resolve();
        };
      });
      sync.resubscribed();
    })();
    await turns();
    await turns();
    expect(first.done).toBe(false);
    run.finish();
    await turns();
    expect(first.done).toBe(false);
    // Marker 1 may have been sent before the break ended: it is sent again, and its return passes the sync.
    expect(published).toEqual([1, 2]);
    await markerBack(sync, 2, first);
  });

  it('shares one marker among the syncs asked for in one turn, and one per round of retries', async () => {
    const time = fakeTime();
    const { sync, published } = barrier({ mode: 'single', publish: () => 0, timeout: 500 });
    const all = track(Promise.all(Array.from({ length: 1000 }, () => sync.sync(() => true))).then(() => {}));
    await turns();
    // 1000 pings while nobody hears the node's channel: a marker per 100 ms round, not per ping.
    expect(published).toEqual([1]);
    await time.advanceTo(499);
    expect(published).toEqual([1, 2, 3, 4, 5]);
    expect(all.done).toBe(false);
    await time.advanceTo(500);
    expect(all.done).toBe(true);
    expect(published).toEqual([1, 2, 3, 4, 5]);
  });

  it('gives up at the timeout even when the last PUBLISH hangs for a command timeout of its own', async () => {
    const time = fakeTime();
    const timeout = 400;
    // Nobody hears the channel until, near the deadline, Redis stops answering for a whole timeout.
    const { sync, published } = barrier({
      mode: 'single',
      timeout,
      publish: async () => {
        if (time.elapsed() < timeout - 150) return 0;
        await new Promise((resolve) => setTimeout(resolve, timeout));
        return -1;
      },
    });
    const done = track(sync.sync(() => true));
    await time.advanceTo(timeout - 1);
    // Rounds at 0, 100, 200 found no subscriber; the PUBLISH of the round at 300 hangs until 700.
    expect(published).toEqual([1, 2, 3, 4]);
    expect(done.done).toBe(false);
    await time.advanceTo(timeout);
    expect(done.done).toBe(true);
  });

  it('gives up at the timeout even while a batch of a key that matters waits for its predecessor', async () => {
    const time = fakeTime();
    const timeout = 400;
    const sequencer = new BatchSequencer({ node: () => 'me', gapWait: 1000, deliver: () => {} });
    try {
      sequencer.accept({ key: 'k', encoded: 'k006b', pv: 0, v: 10, items: [] });
      sequencer.accept({ key: 'k', encoded: 'k006b', pv: 20, v: 30, items: [] });
      const { sync } = barrier({ mode: 'single', timeout, sequencer, publish: () => 1 });
      const done = track(sync.sync((key) => key === 'k'));
      // The marker comes back late, just before the deadline; the held batch would wait up to 2 s more.
      await time.advanceTo(timeout - 50);
      sync.pass(1);
      await time.advanceTo(timeout - 1);
      expect(done.done).toBe(false);
      await time.advanceTo(timeout);
      expect(done.done).toBe(true);
    } finally {
      sequencer.close();
    }
  });

  it('gives up every sync when the store closes', async () => {
    const { sync } = barrier({ mode: 'single', publish: () => 1 });
    const pending = sync.sync(() => true);
    await turns();
    sync.release();
    await expect(pending).resolves.toBeUndefined();
  });
});
