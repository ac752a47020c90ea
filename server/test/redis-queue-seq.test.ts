import { describe, expect, it } from 'vitest';
import { createClient } from 'redis';
import { createManualClock } from '../src/clock.js';
import { encodeKey, keyNames } from '../src/redis/key-codec.js';
import { useRedisStores } from './redis-harness.js';
import { acquireInput, quietListener } from './server-harness.js';

describe('the Redis queue order when a key meta hash is lost while its queue is not empty', () => {
  const stores = useRedisStores('seqloss');

  it('keeps seq increasing and the grant order by arrival after the meta hash alone is evicted', async () => {
    const namespace = stores.namespace();
    const [node] = await stores.startNodes([stores.redis.url], { clock: createManualClock(), namespace }, () => ({ listener: quietListener() }));
    if (!node) throw new Error('node');
    const store = node.store;
    await store.acquire('a', acquireInput(1, 'mk'));
    await store.acquire('b', acquireInput(2, 'mk'));
    await store.acquire('c', acquireInput(3, 'mk'));
    // What an allkeys-* maxmemory eviction of this one key does: the holders, queue and waiters stay.
    const admin = createClient({ url: stores.redis.url });
    await admin.connect();
    const [meta] = keyNames(namespace).lockKeys(encodeKey('mk'));
    expect(await admin.sendCommand(['DEL', meta])).toBe(1);
    admin.destroy();
    await store.acquire('d', acquireInput(4, 'mk'));
    const queue = (await store.status('mk', null)).queue;
    expect(queue.map((w) => w.session)).toEqual(['b', 'c', 'd']);
    const seqs = queue.map((w) => w.seq ?? -1);
    expect(seqs[2]).toBeGreaterThan(seqs[1] ?? 0);
  });
});
