import calculateSlot from 'cluster-key-slot';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectRedis, type RedisLink } from '../server/src/redis/redis-link.js';
import { encodeKey } from '../server/src/redis/key-codec.js';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import type { LockStore } from '../server/src/store.js';
import { listenerLog } from '../server/test/redis-harness.js';
import { acquireInput } from '../server/test/server-harness.js';
import { until, within } from './faults/within.js';
import { onPort, startRedisCluster, type RedisCluster } from './helpers/redis-server.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

// One primary of a Redis Cluster that accepts bytes and never answers while
// its connection stays open (a stalled proxy or load balancer in front of
// it): each primary is reached through a TCP proxy of its own, announced by
// the primary as its address (`cluster-announce-port`, as behind NAT), so
// node-redis connects to every primary through it; the cluster bus stays
// direct, so the cluster itself stays healthy. Redis' own count of the
// commands it ran shows what the node sent on the hung path.

const COMMAND_TIMEOUT = 300;

let cluster: RedisCluster | undefined;
/** Per primary, in the order of `cluster.ports`: the proxy in front of it. */
const proxies: TcpProxy[] = [];
const links: RedisLink[] = [];
const stores: LockStore[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster();
  for (const port of cluster.ports) proxies.push(await startTcpProxy({ targetPort: port }));
  await Promise.all(
    cluster.ports.map((port, i) =>
      onPort(port, (admin) => admin.sendCommand(['CONFIG', 'SET', 'cluster-announce-port', String(proxies[i]?.port)])),
    ),
  );
  // The primaries learn each other's announced ports from the cluster bus' pings.
  const announced = new Set(proxies.map((proxy) => proxy.port));
  await until(
    async () => {
      for (const port of started().ports) {
        const ranges = await slotRanges(port);
        if (!ranges.every(([, , [, at]]) => announced.has(at))) return undefined;
      }
      return true;
    },
    20_000,
    'every primary announcing its proxy',
  );
}, 60_000);
afterAll(async () => {
  for (const proxy of proxies.splice(0)) await proxy.close();
  await cluster?.stop();
});
afterEach(async () => {
  for (const proxy of proxies) proxy.resume();
  for (const link of links.splice(0)) await link.close();
  for (const store of stores.splice(0)) await store.close().catch(() => {});
});

function started(): RedisCluster {
  if (!cluster) throw new Error('the Redis Cluster is not started');
  return cluster;
}

type SlotRange = [number, number, [string, number, ...unknown[]], ...unknown[]];

async function slotRanges(port: number): Promise<SlotRange[]> {
  return (await onPort(port, (admin) => admin.sendCommand(['CLUSTER', 'SLOTS']))) as unknown as SlotRange[];
}

/** The first key `prefix<n>` whose slot (that of `stored(key)`, the Redis key it is kept in) the primary behind `proxy` serves. */
async function keyOn(proxy: TcpProxy, prefix: string, stored = (key: string) => key): Promise<string> {
  const ranges = await slotRanges(started().ports[0] as number);
  for (let n = 0; n < 10_000; n++) {
    const key = `${prefix}${n}`;
    const slot = calculateSlot(stored(key));
    if (ranges.some(([from, to, [, port]]) => from <= slot && slot <= to && port === proxy.port)) return key;
  }
  throw new Error(`no key of ${prefix} on the primary behind port ${proxy.port}`);
}

/**
 * Sets `key` to `value` through `link` before a test cuts a path: asked
 * again while a loaded machine keeps the first command (and the connection
 * it opens to the primary) past the short command timeout. Setup only: the
 * behaviour under test is timed on its own.
 */
async function setKey(link: RedisLink, key: string, value: string): Promise<void> {
  const set = async () => ((await link.command(key, ['SET', key, value]).catch(() => undefined)) === 'OK' ? true : undefined);
  await until(set, 10 * COMMAND_TIMEOUT, `${key} set`);
}

/** Commands a primary ran so far, but those of the admin connection reading the count. */
async function commandsRun(port: number): Promise<number> {
  const info = await onPort(port, (admin) => admin.info('commandstats'));
  let total = 0;
  for (const [, name, calls] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (name !== 'info' && !name?.startsWith('client') && !name?.startsWith('cluster')) total += Number(calls);
  }
  return total;
}

/** How a call ended: `answered` or `failed`. */
const outcome = (call: Promise<unknown>): Promise<string> =>
  call.then(
    () => 'answered',
    () => 'failed',
  );

/** The root node URLs of the cluster through the proxies. */
const proxiedUrl = () => proxies.map((proxy) => `redis://127.0.0.1:${proxy.port}`).join(',');

describe('a primary of a Redis Cluster that stops answering while its connection stays open', () => {
  it('has its connection replaced, leaves no backlog of failed calls for it to run, and the other primaries serve meanwhile', async () => {
    const [hung, healthy] = proxies as [TcpProxy, TcpProxy];
    const hungPort = started().ports[0] as number;
    const link = await connectRedis({
      url: proxiedUrl(),
      cluster: true,
      commandTimeout: COMMAND_TIMEOUT,
      reconnectDelay: 100,
    });
    links.push(link);
    const onHung = await keyOn(hung, 'hung');
    const onHealthy = await keyOn(healthy, 'healthy');
    await setKey(link, onHung, 'x');
    await setKey(link, onHealthy, 'y');
    const before = await commandsRun(hungPort);

    hung.hold();
    const held = performance.now();
    const connections = hung.accepted;
    // The first calls fail after the command timeout, on the connection that hangs; once the link gave
    // that connection up, the primary's calls fail at once, with nothing sent until a new connection answers.
    await until(
      async () => {
        const sent = performance.now();
        const failed = (await outcome(link.command(onHung, ['GET', onHung]))) === 'failed';
        return failed && performance.now() - sent < COMMAND_TIMEOUT / 2 ? true : undefined;
      },
      10 * COMMAND_TIMEOUT,
      'a call failed at once',
    );
    // Another primary answers meanwhile, on its own connection.
    expect(await within(link.command(onHealthy, ['GET', onHealthy]), COMMAND_TIMEOUT, 'the healthy primary answered')).toBe('y');
    const burst = 300;
    const sent = performance.now();
    const outcomes = await Promise.all(Array.from({ length: burst }, () => outcome(link.command(onHung, ['GET', onHung]))));
    expect(new Set(outcomes)).toEqual(new Set(['failed']));
    expect(performance.now() - sent).toBeLessThan(COMMAND_TIMEOUT);
    // A new connection is tried each timeout while the path hangs, no more.
    await until(async () => (hung.accepted >= connections + 2 ? true : undefined), 10 * COMMAND_TIMEOUT, 'two new connections');
    expect(hung.accepted - connections).toBeLessThanOrEqual(Math.ceil((performance.now() - held) / COMMAND_TIMEOUT) + 1);

    hung.resume();
    await until(
      async () => ((await outcome(link.command(onHung, ['GET', onHung]))) === 'answered' ? true : undefined),
      5000,
      'the primary answered',
    );
    expect(await link.command(onHung, ['GET', onHung])).toBe('x');
    // What the primary ran from the hang on: what the hung connection carried before it was given up,
    // a PING per new connection, and the calls since it answered, not the burst.
    expect((await commandsRun(hungPort)) - before).toBeLessThan(burst / 4);
  }, 30_000);

  it('finds the hang from the reads sent to the primary whatever their keys (INFO, SCAN) too', async () => {
    const [hung] = proxies as [TcpProxy];
    const link = await connectRedis({ url: proxiedUrl(), cluster: true, commandTimeout: COMMAND_TIMEOUT, reconnectDelay: 100 });
    links.push(link);
    const shard = (await link.shards()).find((each) => each.address.endsWith(`:${hung.port}`));
    if (shard === undefined) throw new Error('no shard behind the proxy');
    expect(String(await shard.command(['INFO', 'server']))).toContain('run_id');

    hung.hold();
    await until(
      async () => {
        const sent = performance.now();
        const failed = (await outcome(shard.command(['INFO', 'server']))) === 'failed';
        return failed && performance.now() - sent < COMMAND_TIMEOUT / 2 ? true : undefined;
      },
      10 * COMMAND_TIMEOUT,
      'a read failed at once',
    );
    hung.resume();
    await until(
      async () => ((await outcome(shard.command(['INFO', 'server']))) === 'answered' ? true : undefined),
      5000,
      'the primary answered',
    );
  }, 30_000);

  // A load balancer or NAT in front of the primary that lost the connection's state: the connection
  // stays silent for good, while a new one is carried.
  it('has a connection that went silent for good replaced by one that answers', async () => {
    const [stranded] = proxies as [TcpProxy];
    const link = await connectRedis({ url: proxiedUrl(), cluster: true, commandTimeout: COMMAND_TIMEOUT, reconnectDelay: 100 });
    links.push(link);
    const key = await keyOn(stranded, 'stranded');
    await setKey(link, key, 'z');

    const connections = stranded.accepted;
    stranded.strand();
    await until(
      async () => ((await link.command(key, ['GET', key]).catch(() => undefined)) === 'z' ? true : undefined),
      10 * COMMAND_TIMEOUT,
      'an answer on a new connection',
    );
    expect(stranded.accepted).toBeGreaterThan(connections);
  }, 30_000);

  it('lets a node serve again, its holders keeping their locks, once a silent primary connection was replaced', async () => {
    const [stranded, healthy] = proxies as [TcpProxy, TcpProxy];
    const log = listenerLog();
    const namespace = `hung${process.pid}`;
    const store = createRedisStore({
      url: proxiedUrl(),
      cluster: true,
      namespace,
      nodeTtl: 5000,
      commandTimeout: COMMAND_TIMEOUT,
    });
    stores.push(store);
    await store.start(log.listener);
    // The store keeps a lock key's records in the slot of its hash tag.
    const stored = (key: string) => `${namespace}:{${encodeKey(key)}}:h`;
    const held = await keyOn(healthy, 'held', stored);
    const onStranded = await keyOn(stranded, 'wanted', stored);
    expect(await store.acquire('holder', acquireInput(1, held))).toMatchObject({ status: 'granted' });

    stranded.strand();
    const since = performance.now();
    let ticket = 1;
    // Calls fail while the silent connection is found out and replaced, then the node serves again.
    const granted = await until(
      async () => {
        const answer = await store.acquire('taker', acquireInput(++ticket, onStranded)).catch(() => undefined);
        return answer?.status === 'granted' ? answer : undefined;
      },
      4000,
      'an acquire on the silent primary granted',
    );
    expect(granted.token).toBeGreaterThan(0);
    // Within the node TTL: the node never stopped vouching for its holders.
    expect(performance.now() - since).toBeLessThan(5000);
    await store.release('holder', held);
    expect(log.lines.filter((line) => line.startsWith('lost'))).toEqual([]);
  }, 30_000);

  it('has a pub/sub connection that went silent for good replaced, subscribed to its channels again', async () => {
    const link = await connectRedis({
      url: proxiedUrl(),
      cluster: true,
      commandTimeout: COMMAND_TIMEOUT,
      reconnectDelay: 100,
      subscriberIdleTimeout: 1000,
    });
    links.push(link);
    const heard: string[] = [];
    let resubscribed = 0;
    link.on('resubscribed', () => (resubscribed += 1));
    const channel = `hung-channel-${process.pid}`;
    await link.subscribe(channel, (message) => heard.push(message));
    // A message published on any primary reaches every node's subscribers over the cluster bus.
    const publish = (message: string) => onPort(started().ports[1] as number, (admin) => admin.publish(channel, message));
    await publish('before');
    await until(async () => (heard.includes('before') ? true : undefined), 5000, 'a message before');
    // node-redis picked a node for its pub/sub connection: the one that counts a subscriber of the
    // channel (PUBSUB NUMSUB counts a node's own; earlier tests' silent connections are on other channels).
    const subscribers = await Promise.all(
      started().ports.map((port) => onPort(port, (admin) => admin.sendCommand(['PUBSUB', 'NUMSUB', channel]))),
    );
    const index = subscribers.findIndex((reply) => Number((reply as unknown as [string, number])[1]) > 0);
    const stranded = proxies[index];
    if (stranded === undefined) throw new Error('no primary has the pub/sub connection');

    stranded.strand();
    let n = 0;
    // Published again and again on one connection: those sent while the pub/sub connection is silent are
    // lost, one sent once it was replaced arrives.
    await onPort(started().ports[1] as number, (admin) =>
      until(
        async () => {
          await admin.publish(channel, `after${++n}`);
          return heard.some((message) => message.startsWith('after')) ? true : undefined;
        },
        5000,
        'a message after the connection went silent',
      ),
    );
    expect(resubscribed).toBe(1);
  }, 30_000);

  it('reports a pub/sub connection that broke and was reconnected, as on a single server', async () => {
    const link = await connectRedis({ url: proxiedUrl(), cluster: true, commandTimeout: COMMAND_TIMEOUT, reconnectDelay: 100 });
    links.push(link);
    const heard: string[] = [];
    let resubscribed = 0;
    link.on('resubscribed', () => (resubscribed += 1));
    const channel = `broken-channel-${process.pid}`;
    await link.subscribe(channel, (message) => heard.push(message));

    // Every pub/sub connection the primaries have (an earlier test's silent ones too, left open by their proxy).
    const killed = await Promise.all(
      started().ports.map((port) => onPort(port, (admin) => admin.sendCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub']))),
    );
    expect(killed.map(Number).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
    await until(async () => (resubscribed > 0 ? true : undefined), 5000, 'the reconnect reported');
    // node-redis subscribed the new connection again: a message published now arrives.
    await onPort(started().ports[2] as number, (admin) =>
      until(
        async () => {
          await admin.publish(channel, 'after');
          return heard.includes('after') ? true : undefined;
        },
        5000,
        'a message after the reconnect',
      ),
    );
    expect(resubscribed).toBe(1);
  }, 30_000);
});
