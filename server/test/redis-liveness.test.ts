import { describe, expect, it } from 'vitest';
import { listenerLog, useRedisStores } from './redis-harness.js';
import { acquireInput } from './server-harness.js';

describe('a Redis node that stopped vouching for its locks', () => {
  const stores = useRedisStores('live');

  it('frees the locks it reported lost even when its liveness key survived, within one node TTL', async () => {
    const proxy = await stores.proxy();
    const log = listenerLog();
    const namespace = stores.namespace();
    const nodeTtl = 1000;
    const a = await stores.startStore({ url: proxy.url, namespace, nodeTtl, commandTimeout: 5000, tolerateCloseFailure: true }, log.listener);
    const bLog = listenerLog();
    const b = await stores.startStore({ url: stores.redis.url, namespace, nodeTtl }, bLog.listener);
    const held = await a.acquire('h', acquireInput(1, 'k'));
    if (held.status !== 'granted') throw new Error('h was not granted');
    expect(await b.acquire('w', acquireInput(2, 'k'))).toMatchObject({ status: 'queued' });
    // Replies come late: the renews still run in Redis on time, but a cannot see them succeed in time.
    proxy.delayReplies(400);
    await log.next(/^lost h k /, 5000);
    expect(log.lines).toEqual([`lost h k ${held.token} revoked`]);
    proxy.delayReplies(0);
    // h was told it lost k: the waiter on the other node gets it, while h's session lives on.
    await bLog.next(/^granted w /, nodeTtl);
    expect((await b.status('k', null)).holders.map((x) => x.session)).toEqual(['w']);
  });
});
