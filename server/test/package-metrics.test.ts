import { describe, expect, it } from 'vitest';
import { createLockMetrics, createLockServer, createRedisStore, type LockMetrics } from '@lockwire/server';
import { useRedisStores } from './redis-harness.js';
import { RawClient, within } from './server-harness.js';

const stores = useRedisStores('pm');

async function scrapeOverHttp(port: number): Promise<string> {
  const response = await within(fetch(`http://127.0.0.1:${port}/metrics`), 'GET /metrics');
  expect(response.status).toBe(200);
  return within(response.text(), 'the body of /metrics');
}

describe('metrics from code, through @lockwire/server', () => {
  it('a server given createLockMetrics(), whose observeScript went to createRedisStore, serves the script metrics on /metrics', async () => {
    const metrics: LockMetrics = createLockMetrics({ processMetrics: false });
    const store = createRedisStore({ url: stores.redis.url, namespace: stores.namespace(), observeScript: metrics.observeScript });
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store, metrics });
    try {
      const { client } = await RawClient.connect(server.url);
      expect(await client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
      const text = await scrapeOverHttp(server.port);
      expect(text).toMatch(/^lockwire_redis_script_seconds_count\{script="acquire"\} 1$/m);
      expect(text).toMatch(/^lockwire_locks_held\{store="redis"\} 1$/m);
      await client.close();
    } finally {
      await server.close();
    }
  });
});
