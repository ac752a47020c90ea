import { describe, expect, it } from 'vitest';
import type { StoreContext } from '../src/redis/store-context.js';
import { SyncBarrier } from '../src/redis/sync-barrier.js';

/** A barrier over a fake link whose PUBLISH answers as `publish` says for the nth marker. */
function barrier(options: { mode: 'single' | 'cluster'; publish: (n: number) => number; timeout?: number }) {
  const published: number[] = [];
  const link = {
    mode: options.mode,
    command: async (_key: string | undefined, args: string[]) => {
      const n = Number(String(args[2]).split(' ')[1]);
      published.push(n);
      const receivers = options.publish(n);
      if (receivers < 0) throw new Error('the command timed out');
      return receivers;
    },
  };
  let settled = 0;
  const ctx = {
    link,
    liveness: { id: 'n1' },
    sequencer: { heard: async () => {} },
    names: { nodeChannel: (id: string) => `lw:n:${id}` },
    closing: null,
  } as unknown as StoreContext;
  const sync = new SyncBarrier({
    ctx,
    timeout: options.timeout ?? 5000,
    settled: async () => {
      settled++;
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

/** Marker `n` comes back; every sync in `waiting` must then be done. */
async function markerBack(sync: SyncBarrier, n: number, ...waiting: Array<{ done: boolean }>) {
  sync.pass(n);
  await turn();
  await turn();
  for (const state of waiting) expect(state.done).toBe(true);
}

describe('the Redis sync barrier', () => {
  it('passes a sync once its marker comes back, after the reconciliation under way settled', async () => {
    const { sync, published, settledCalls } = barrier({ mode: 'single', publish: () => 1 });
    const first = track(sync.sync(() => true));
    await turn();
    expect(published).toEqual([1]);
    expect(first.done).toBe(false);
    await markerBack(sync, 1, first);
    expect(settledCalls()).toBe(1);
  });

  it('does not pass an earlier sync whose marker is still on its way when a later marker could not be sent', async () => {
    const { sync, published } = barrier({ mode: 'single', publish: (n) => (n === 2 ? -1 : 1) });
    const first = track(sync.sync(() => true));
    await turn();
    const second = track(sync.sync(() => true));
    await turn();
    await turn();
    // Marker 2's PUBLISH failed: that says nothing of marker 1, still on its way.
    expect(published).toEqual([1, 2]);
    expect(first.done).toBe(false);
    expect(second.done).toBe(false);
    sync.resubscribed();
    await turn();
    // Both try again (marker 1 may have gone to the broken connection); the last marker's return passes both.
    expect(published).toEqual([1, 2, 3, 4]);
    await markerBack(sync, 4, first, second);
  });

  it('on a Redis Cluster waits for the marker even when PUBLISH counted no subscriber on its shard', async () => {
    const { sync, published } = barrier({ mode: 'cluster', publish: () => 0 });
    const first = track(sync.sync(() => true));
    await turn();
    await turn();
    expect(published).toEqual([1]);
    expect(first.done).toBe(false);
    await markerBack(sync, 1, first);
  });

  it('on a single server sends the marker again once the pub/sub connection is back, when none heard it', async () => {
    const subscribed = { now: false };
    const { sync, published } = barrier({ mode: 'single', publish: () => (subscribed.now ? 1 : 0) });
    const first = track(sync.sync(() => true));
    await turn();
    expect(published).toEqual([1]);
    subscribed.now = true;
    sync.resubscribed();
    await turn();
    expect(published).toEqual([1, 2]);
    expect(first.done).toBe(false);
    await markerBack(sync, 2, first);
  });

  it('sends again a marker that was out when the pub/sub connection broke and came back', async () => {
    const { sync, published } = barrier({ mode: 'single', publish: () => 1 });
    const first = track(sync.sync(() => true));
    await turn();
    sync.resubscribed();
    await turn();
    expect(published).toEqual([1, 2]);
    await markerBack(sync, 2, first);
  });

  it('gives up every sync when the store closes', async () => {
    const { sync } = barrier({ mode: 'single', publish: () => 1 });
    const pending = sync.sync(() => true);
    await turn();
    sync.release();
    await expect(pending).resolves.toBeUndefined();
  });
});
