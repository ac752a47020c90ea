import { request } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer, type Logger } from '@lockwire/server';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import { RawClient } from './helpers/raw-client.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

// A node reaches Redis through a proxy the test cuts (every connection reset,
// new ones refused) and restores. Its readiness is read from the state its
// renew rounds keep; the test awaits the store's own log lines of each change
// of that state, then asks /readyz once.

const NODE_TTL = 1000;
const COMMAND_TIMEOUT = 300;
/** Bound on each awaited log line: the state changes within a node TTL or a reconnect. */
const BOUND = NODE_TTL + 4000;

/** A logger that keeps every line, and resolves a wait for a line with a given message logged from a mark on. */
function recordingLogger() {
  const lines: { level: string; msg: string }[] = [];
  const waiters = new Set<() => void>();
  const log = (level: string) => (_obj: object, msg: string) => {
    lines.push({ level, msg });
    for (const wake of [...waiters]) wake();
  };
  const logger: Logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
  return {
    logger,
    /** Where the next line will be: a wait from here sees only lines logged later. */
    mark: () => lines.length,
    /** Resolves once a line whose message starts with `msg` was logged at or after `from`; rejects after `ms`. */
    logged(msg: string, from: number, ms = BOUND): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!lines.slice(from).some((line) => line.msg.startsWith(msg))) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no log line "${msg}" within ${ms} ms`));
        }, ms);
        waiters.add(check);
        check();
      });
    },
  };
}

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
    const log = recordingLogger();
    const store = createRedisStore({
      url: `redis://127.0.0.1:${proxy.port}`,
      namespace: `readyz${process.pid}x${++run}`,
      nodeTtl: NODE_TTL,
      commandTimeout: COMMAND_TIMEOUT,
      logger: log.logger,
    });
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store });
    servers.push(server);
    expect(await probe(server)).toEqual({ status: 200, body: { ok: true, store: 'redis', sessions: 0 } });

    let from = log.mark();
    proxy.refuse();
    await log.logged('Redis unreachable; retrying', from);
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

    await log.logged('lost contact with Redis for the node TTL', from);
    expect(await probe(server)).toEqual({ status: 503, body: unreachable });

    from = log.mark();
    proxy.resume();
    // The node registers anew, then serves once what its old id left in Redis is dropped.
    await log.logged('dropped what previous ids of this node left', from);
    expect(await probe(server)).toEqual({ status: 200, body: { ok: true, store: 'redis', sessions: 1 } });
    expect(await probe(server, '/healthz')).toMatchObject({ status: 200 });
    expect(await client.request({ op: 'acquire', key: 'k' })).toMatchObject({ ok: true, acquired: true });
  });
});
