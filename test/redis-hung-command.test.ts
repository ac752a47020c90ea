import { afterEach, describe, expect, it } from 'vitest';
import { COMMAND_QUEUE_LIMIT } from '../server/src/redis/command-deadlines.js';
import { DEFAULT_REDIS_CONNECTIONS } from '../server/src/redis/command-pool.js';
import { connectRedis, type RedisLink } from '../server/src/redis/redis-link.js';
import { listenerLog, useRedisStores } from '../server/test/redis-harness.js';
import { acquireInput } from '../server/test/server-harness.js';
import { until, within } from './faults/within.js';
import { onPort } from './helpers/redis-server.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

// A Redis that accepts bytes and never answers while the connection stays
// open (a stopped redis-server, a stalled proxy): here a TCP proxy holding
// every byte both ways, and delivering what it held on resume, as the
// kernels of a stopped Redis would. Redis' own count of the commands it ran
// (INFO commandstats) shows what the node sent on the hung path.

const COMMAND_TIMEOUT = 300;

const proxies: TcpProxy[] = [];
const links: RedisLink[] = [];
// Registered before the stores' hooks, so it runs after their closes.
afterEach(async () => {
  for (const link of links.splice(0)) await link.close();
  for (const proxy of proxies.splice(0)) await proxy.close();
});
const stores = useRedisStores('hung');
afterEach(() => {
  // Before the stores close: a held path would make their goodbyes wait.
  for (const proxy of proxies) proxy.resume();
});

async function heldProxy(): Promise<TcpProxy> {
  const proxy = await startTcpProxy({ targetPort: stores.redis.port });
  proxies.push(proxy);
  return proxy;
}

/** Commands the redis-server ran so far, but those of the admin connection reading the count. */
async function commandsRun(): Promise<number> {
  const info = await onPort(stores.redis.port, (admin) => admin.info('commandstats'));
  let total = 0;
  for (const [, name, calls] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (name !== 'info' && !name?.startsWith('client')) total += Number(calls);
  }
  return total;
}

/** How a store call ended: `answered` or `failed <code>`. */
const outcome = (call: Promise<unknown>): Promise<string> =>
  call.then(
    () => 'answered',
    (error: { code?: string }) => `failed ${error.code}`,
  );

describe('a Redis that stops answering while its connection stays open', () => {
  it('leaves no backlog of failed calls for Redis to run when it answers again, and the node serves again', async () => {
    const proxy = await heldProxy();
    const log = listenerLog();
    const store = await stores.startStore(
      { url: proxy.url(stores.redis.url), namespace: stores.namespace(), nodeTtl: 1000, commandTimeout: COMMAND_TIMEOUT, tolerateCloseFailure: true },
      log.listener,
    );
    expect(await outcome(store.status('warm', null))).toBe('answered');
    const before = await commandsRun();

    proxy.hold();
    const held = performance.now();
    const connections = proxy.accepted;
    // The first calls fail after the command timeout, on the connection that hangs; once the node gave
    // that connection up, calls fail at once, with nothing sent on the path until a new connection answers.
    await until(
      async () => {
        const sent = performance.now();
        const failed = (await outcome(store.status('first', null))) === 'failed store_unavailable';
        return failed && performance.now() - sent < COMMAND_TIMEOUT / 2 ? true : undefined;
      },
      10 * COMMAND_TIMEOUT,
      'a call failed at once',
    );
    const burst = 300;
    const started = performance.now();
    const outcomes = await Promise.all(Array.from({ length: burst }, (_, i) => outcome(store.status(`hung${i}`, null))));
    expect(new Set(outcomes)).toEqual(new Set(['failed store_unavailable']));
    expect(performance.now() - started).toBeLessThan(COMMAND_TIMEOUT);
    // Several timeouts of hang, with the renew rounds of a 1 s node TTL. New connections: one per command
    // connection of the pool per timeout at most (all are given up together), and the pub/sub
    // connection's, idle for a second, every second.
    await until(async () => (proxy.accepted >= connections + 4 ? true : undefined), 10 * COMMAND_TIMEOUT, 'four new connections');
    const elapsed = performance.now() - held;
    expect(proxy.accepted - connections).toBeLessThanOrEqual(
      DEFAULT_REDIS_CONNECTIONS * Math.ceil(elapsed / COMMAND_TIMEOUT) + Math.ceil(elapsed / 1000),
    );

    proxy.resume();
    await until(async () => ((await outcome(store.status('after', null))) === 'answered' ? true : undefined), 5000, 'a status answered');
    // The node's liveness recovers: it changes the table again.
    await until(
      async () => ((await outcome(store.acquire('s', acquireInput(1, 'after')))) === 'answered' ? true : undefined),
      5000,
      'an acquire answered',
    );
    // What Redis ran from the hang on: what the hung connection carried before it was given up (the first
    // call and a renew round or two), a PING per new connection, and the node's recovery, not the burst.
    const ran = (await commandsRun()) - before;
    expect(ran).toBeLessThan(burst / 4);
  }, 30_000);

  // A load balancer or NAT in front of Redis that lost the connections' state: they stay silent for
  // good, pub/sub included, while new connections get through.
  it('lets the node serve again, its holders keeping their locks, once its silent connections were replaced', async () => {
    const proxy = await heldProxy();
    const log = listenerLog();
    const store = await stores.startStore(
      { url: proxy.url(stores.redis.url), namespace: stores.namespace(), nodeTtl: 5000, commandTimeout: COMMAND_TIMEOUT, tolerateCloseFailure: true },
      log.listener,
    );
    expect(await store.acquire('holder', acquireInput(1, 'held'))).toMatchObject({ status: 'granted' });

    proxy.strand();
    const since = performance.now();
    let ticket = 1;
    const granted = await until(
      async () => {
        const answer = await store.acquire('taker', acquireInput(++ticket, 'wanted')).catch(() => undefined);
        return answer?.status === 'granted' ? answer : undefined;
      },
      4000,
      'an acquire granted',
    );
    expect(granted.token).toBeGreaterThan(0);
    // Within the node TTL: the node never stopped vouching for its holders.
    expect(performance.now() - since).toBeLessThan(5000);
    await store.release('holder', 'held');
    expect(log.lines.filter((line) => line.startsWith('lost'))).toEqual([]);
  }, 30_000);

  it('refuses a command beyond the queue limit at once instead of queueing it on the hung connection', async () => {
    const proxy = await heldProxy();
    const link = await connectRedis({ url: proxy.url(stores.redis.url), cluster: false, commandTimeout: 60_000, reconnectDelay: 100 });
    links.push(link);
    expect(await link.command(undefined, ['PING'])).toBe('PONG');
    proxy.hold();
    // A command timeout of a minute: nothing but the limit can refuse these while the test runs.
    const calls = Array.from({ length: COMMAND_QUEUE_LIMIT + 1 }, () => link.command(undefined, ['PING']));
    const last = calls.pop();
    for (const call of calls) call.catch(() => {});
    await expect(within(last ?? Promise.resolve(), 5000, 'the command beyond the limit settled')).rejects.toThrow(/queue is full/);
    proxy.resume();
    await within(Promise.all(calls), 30_000, 'the queued commands answered');
  }, 60_000);
});
