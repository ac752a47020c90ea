import { describe, expect, it } from 'vitest';
import { createLockMetrics } from '../src/metrics.js';
import { createRedisStore } from '../src/redis/redis-store.js';
import { createLockServer } from '../src/server.js';
import { useRedisStores } from './redis-harness.js';
import { RawClient } from './server-harness.js';

const stores = useRedisStores('m');

function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('metrics of a server on the Redis store', () => {
  it('label the gauges redis and time every script call, counting the failed ones', async () => {
    const metrics = createLockMetrics({ processMetrics: false });
    const store = createRedisStore({ url: stores.redis.url, namespace: stores.namespace(), observeScript: metrics.observeScript });
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store, metrics });
    try {
      const { client } = await RawClient.connect(server.url);
      expect(await client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
      let text = await metrics.scrape();
      expect(sample(text, 'lockwire_locks_held{store="redis"}')).toBe(1);
      expect(sample(text, 'lockwire_redis_script_seconds_count{script="acquire"}')).toBe(1);
      expect(sample(text, 'lockwire_redis_script_errors_total{script="release"}')).toBeUndefined();

      expect(await client.request({ op: 'release', id: 2, key: 'k' })).toMatchObject({ released: true });
      await stores.redis.kill();
      expect(await client.request({ op: 'release', id: 3, key: 'k' })).toMatchObject({
        ok: false,
        error: { code: 'store_unavailable' },
      });
      text = await metrics.scrape();
      expect(sample(text, 'lockwire_redis_script_seconds_count{script="release"}')).toBe(2);
      expect(sample(text, 'lockwire_redis_script_errors_total{script="release"}')).toBe(1);
      expect(sample(text, 'lockwire_errors_total{code="store_unavailable"}')).toBe(1);
      await client.close();
    } finally {
      await server.close();
    }
  });
});
