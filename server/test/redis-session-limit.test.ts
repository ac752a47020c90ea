import { createClient } from 'redis';
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { encodeKey, keyNames } from '../src/redis/key-codec.js';
import { useRedisStores } from './redis-harness.js';
import { acquireInput } from './server-harness.js';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

// The maxLocksPerSession check of an acquire that arrives while earlier
// requests of its session are in flight counts the session's locks after
// those requests, as the memory store applies them: in arrival order.
describe('the session lock limit of the Redis store', () => {
  const stores = useRedisStores('lim');

  it('grants an acquire at the limit sent after "acquire k; release k" when the release is answered after the acquire', async () => {
    const proxy = await stores.proxy();
    const limits = { maxLocksPerSession: 2, maxWaitersPerKey: 10 };
    const [node] = await stores.startNodes([proxy.url], { clock: createManualClock(), nodeTtl: 30_000, limits });
    if (!node) throw new Error('the node was not started');
    const { store } = node;
    expect(await store.acquire('a', acquireInput(1, 'h'))).toMatchObject({ status: 'granted' });
    expect(await store.acquire('a', acquireInput(2, 'k'))).toMatchObject({ status: 'granted' });
    await store.release('a', 'k');
    // Replies come 50 ms late, in order: Redis runs the acquire of k and the release, the release's reply
    // comes a moment after the acquire's, and the acquire of x arrives with both in flight.
    proxy.delayReplies(50);
    const acquired = store.acquire('a', acquireInput(3, 'k'));
    const admin = createClient({ url: stores.redis.url });
    admin.on('error', () => {});
    await admin.connect();
    try {
      const holders = keyNames(node.namespace).lockKeys(encodeKey('k'))[1];
      if (holders === undefined) throw new Error('no holders key');
      for (let i = 0; i < 1000 && (await admin.hExists(holders, 'a')) !== 1; i++) await tick();
      expect(await admin.hExists(holders, 'a')).toBe(1);
    } finally {
      await admin.close();
    }
    // The proxy times replies by the ms: the release's reply is due at least a ms after the acquire's.
    for (const at = Date.now(); Date.now() === at; ) await tick();
    const released = store.release('a', 'k');
    const next = store.acquire('a', acquireInput(4, 'x'));
    const outcomes = await Promise.allSettled([acquired, released, next]);
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : (o.reason as { code: string }).code))).toEqual([
      expect.objectContaining({ status: 'granted' }),
      undefined,
      expect.objectContaining({ status: 'granted' }),
    ]);
  });
});
