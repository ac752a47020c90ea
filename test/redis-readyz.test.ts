import { request } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import { silentLogger } from '../server/src/logger.js';
import { listenerLog } from '../server/test/redis-harness.js';
import { RawClient } from './helpers/raw-client.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

// A node reaches Redis through a proxy the test cuts (every connection reset,
// new ones refused) and restores. Its readiness is read from the state its
// renew rounds keep; the test awaits the store's own log line of each change
// of that state (each is logged first in the phase it marks), then asks
// /readyz once.

const NODE_TTL = 1000;
const COMMAND_TIMEOUT = 300;
/** Bound on each awaited log line: the state changes within a node TTL or a reconnect. */
const BOUND = NODE_TTL + 4000;

/** One request on a connection of its own (a health checker's): status and parsed body. */
function probe(server: LockServer, path = '/readyz'): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.httpUrl}${path}`, { agent: false, timeout: 5000 }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += String(chunk)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer within 5000 ms`)));
    req.on('error', reject);
    req.end();
  });
}

describe('GET /readyz on a Redis store node', () => {
  let redis: RedisServer;
  let run = 0;
  const servers: LockServer[] = [];
  const proxies: TcpProxy[] = [];
  const clients: RawClient[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis.stop();
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.terminate();
    for (const proxy of proxies) proxy.resume();
    await Promise.all(servers.splice(0).map((server) => server.close()));
    await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
  });

  it('answers 503 store_unavailable once its node stops serving while Redis is unreachable, through giving up its id, and 200 again once it serves after recovery, while /healthz stays 200', async () => {
    const proxy = await startTcpProxy({ targetPort: redis.port });
    proxies.push(proxy);
    const log = listenerLog();
    const line = (_o: object, msg: string) => log.push(msg);
    const logger = { ...silentLogger, debug: line, info: line, warn: line };
    const store = createRedisStore({
      url: `redis://127.0.0.1:${proxy.port}`,
      namespace: `readyz${process.pid}x${++run}`,
      nodeTtl: NODE_TTL,
      commandTimeout: COMMAND_TIMEOUT,
      logger,
    });
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store });
    servers.push(server);
    expect(await probe(server)).toEqual({ status: 200, body: { ok: true, store: 'redis', sessions: 0 } });

    proxy.refuse();
    await log.next(/^Redis unreachable; retrying/, BOUND);
    const unreachable = { ok: false, reason: 'store_unavailable', message: 'the lock store (Redis) is unreachable' };
    expect(await probe(server)).toEqual({ status: 503, body: unreachable });
    expect(await probe(server, '/healthz')).toMatchObject({ status: 200, body: { ok: true } });
    // What /readyz says is what a request meets.
    const client = await RawClient.connect(server.url);
    clients.push(client);
    expect(await client.request({ op: 'acquire', key: 'k' })).toMatchObject({
      ok: false,
      error: { code: 'store_unavailable', message: unreachable.message },
    });

    await log.next(/^lost contact with Redis for the node TTL/, BOUND);
    expect(await probe(server)).toEqual({ status: 503, body: unreachable });

    proxy.resume();
    // The node registers anew, then serves once what its old id left in Redis is dropped.
    await log.next(/^dropped what previous ids of this node left/, BOUND);
    expect(await probe(server)).toEqual({ status: 200, body: { ok: true, store: 'redis', sessions: 1 } });
    expect(await probe(server, '/healthz')).toMatchObject({ status: 200 });
    expect(await client.request({ op: 'acquire', key: 'k' })).toMatchObject({ ok: true, acquired: true });
  });
});
