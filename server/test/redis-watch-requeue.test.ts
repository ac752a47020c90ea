import { describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import type { LockEvent } from '../src/store.js';
import { listenerLog, useRedisStores } from './redis-harness.js';
import { acquireInput } from './server-harness.js';

function eventLine(event: LockEvent): string {
  return `${event.event} ${event.key} ${event.session} w=${event.waiters}`;
}

describe('a Redis watch catching up on a waiter that queued again during a pub/sub gap', () => {
  const stores = useRedisStores('requeue');

  it.each([
    { how: 'with the same mode and meta', meta: null },
    { how: 'with other meta', meta: { again: 1 } },
  ])('tells a waiter that left and queued again $how during the gap: dequeued, then queued behind the others', async ({ meta }) => {
    const { proxy, proxied, direct } = await stores.twoNodes({ clock: createManualClock(), tolerateCloseFailure: true });
    const watching = proxied.store;
    const other = direct.store;
    const log = listenerLog();
    await watching.watch('gk', 1000, null, (event) => log.push(eventLine(event)));
    await other.acquire('a', acquireInput(1, 'gk'));
    await other.acquire('b', acquireInput(2, 'gk'));
    await other.acquire('c', acquireInput(3, 'gk'));
    await log.next(/^queued gk c /);
    const before = await other.status('gk', null);
    expect(before.queue.map((w) => w.session)).toEqual(['b', 'c']);
    // The watching node loses pub/sub; meanwhile b leaves and queues again: now behind c, with a new seq.
    proxy.cutSubscribers(300);
    expect(await other.cancel('b', 2)).toBe(true);
    await other.acquire('b', meta === null ? acquireInput(4, 'gk') : acquireInput(4, 'gk', { meta }));
    const after = await other.status('gk', null);
    expect(after.queue.map((w) => w.session)).toEqual(['c', 'b']);
    // A later step, heard after the gap, makes the watch catch up (or the resubscription does).
    await other.acquire('d', acquireInput(5, 'gk'));
    await log.next(/^queued gk d /, 5000);
    const told = log.lines.slice(log.lines.indexOf('queued gk c w=2') + 1);
    // A watcher replaying the events must reach the store's queue order [c, b, d].
    expect(told).toEqual(['dequeued gk b w=1', 'queued gk b w=2', 'queued gk d w=3']);
  }, 15000);
});
