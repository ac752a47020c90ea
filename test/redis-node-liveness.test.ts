import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onPort, startRedisCluster, startRedisServer, type RedisCluster } from './helpers/redis-server.js';
import { connectRedis, type RedisLink } from '../server/src/redis/redis-link.js';
import { keyNames, type KeyNames } from '../server/src/redis/key-codec.js';
import { NodeLiveness, type AbandonCause } from '../server/src/redis/node-liveness.js';
import { createManualClock, type Clock } from '../server/src/clock.js';
import { silentLogger } from '../server/src/logger.js';

// A node's membership in the lock table, driven by a manual clock: its
// renew rounds run when the test advances the clock, and the test awaits
// the commands they sent rather than sleeping.
let cluster: RedisCluster | undefined;
beforeAll(async () => {
  cluster = await startRedisCluster();
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});

function started(): RedisCluster {
  if (!cluster) throw new Error('the Redis Cluster is not started');
  return cluster;
}

/** A link whose open commands can be awaited: a renew round ended once none is open for a few turns of the event loop. */
function tracked(link: RedisLink): { link: RedisLink; settled(): Promise<void> } {
  const open = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    open.add(p);
    void p.finally(() => open.delete(p)).catch(() => undefined);
    return p;
  };
  const wrapped: RedisLink = {
    mode: link.mode,
    command: (key, args) => track(link.command(key, args)),
    evalScript: (script, keys, args) => track(link.evalScript(script, keys, args)),
    shards: async () => (await link.shards()).map((shard) => ({ address: shard.address, command: (args: string[]) => track(shard.command(args)) })),
    on: (event, fn) => link.on(event, fn),
    subscribe: (channel, fn) => link.subscribe(channel, fn),
    unsubscribe: (channel) => link.unsubscribe(channel),
    close: () => link.close(),
  };
  return {
    link: wrapped,
    async settled() {
      for (let idle = 0, i = 0; idle < 5 && i < 500; i++) {
        if (open.size > 0) {
          idle = 0;
          await Promise.allSettled([...open]);
        } else idle++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    },
  };
}

interface Watched {
  liveness: NodeLiveness;
  abandons: AbandonCause[];
  registered: string[];
}

/** A node's liveness with hooks that only record what they are told; `tick` is its housekeeping (default: none). */
function watchedLiveness(link: RedisLink, names: KeyNames, ttl: number, clock: Clock, tick = async () => undefined): Watched {
  const abandons: AbandonCause[] = [];
  const registered: string[] = [];
  const liveness = new NodeLiveness({
    link,
    names,
    baseId: 'n',
    ttl,
    logger: silentLogger,
    clock,
    hooks: {
      registered: async (id) => {
        registered.push(id);
      },
      abandon: (cause) => abandons.push(cause),
      recovered: () => undefined,
      tick,
      cleanupDeadNode: async () => undefined,
    },
  });
  return { liveness, abandons, registered };
}

/** The keys matching `pattern` on every primary. */
async function keysOf(pattern: string): Promise<string[]> {
  const out: string[] = [];
  for (const port of started().ports) out.push(...(await onPort(port, (c) => c.keys(pattern))));
  return out;
}

/** The port of the primary owning `key`'s slot. */
async function ownerOf(key: string): Promise<number> {
  const [first] = started().ports;
  if (first === undefined) throw new Error('the cluster has no primary');
  const slot = Number(await onPort(first, (c) => c.sendCommand(['CLUSTER', 'KEYSLOT', key])));
  const ranges = (await onPort(first, (c) => c.sendCommand(['CLUSTER', 'SLOTS']))) as unknown as Array<[number, number, [string, number]]>;
  for (const [from, to, [, port]] of ranges) if (slot >= from && slot <= to) return Number(port);
  throw new Error(`no primary owns slot ${slot}`);
}

describe('a node on a Redis Cluster with one primary full (maxmemory, noeviction)', () => {
  it('registers while a primary its own keys do not live on refuses writes, and places its sentinel there once that primary accepts it', async () => {
    const ports = started().ports;
    // A namespace whose node key, node set and holdoff live on other primaries than the one made full.
    let namespace = '';
    let full: number | undefined;
    for (let i = 0; full === undefined; i++) {
      namespace = `fullreg${process.pid}x${i}`;
      const names = keyNames(namespace);
      const used = new Set(await Promise.all([names.node('n.1'), names.nodes(), names.holdoff()].map(ownerOf)));
      full = ports.find((port) => !used.has(port));
    }
    const fullPort = full;
    const raw = await connectRedis({ url: started().url, cluster: true, commandTimeout: 5000, reconnectDelay: 100 });
    const { link, settled } = tracked(raw);
    const clock = createManualClock();
    const ttl = 3000;
    const node = watchedLiveness(link, keyNames(namespace), ttl, clock);
    await onPort(fullPort, (c) => c.sendCommand(['CONFIG', 'SET', 'maxmemory-policy', 'noeviction']));
    await onPort(fullPort, (c) => c.sendCommand(['CONFIG', 'SET', 'maxmemory', '1']));
    let outcome = 'started';
    let whileFull: string[] = [];
    try {
      try {
        await node.liveness.start();
      } catch (error) {
        outcome = String(error);
      }
      whileFull = await onPort(fullPort, (c) => c.keys(`${namespace}:shard:*`));
    } finally {
      await onPort(fullPort, (c) => c.sendCommand(['CONFIG', 'SET', 'maxmemory', '0']));
    }
    try {
      // The next renew round places the sentinel the full primary refused.
      clock.advance(Math.floor(ttl / 3));
      await settled();
      const placed = await onPort(fullPort, (c) => c.keys(`${namespace}:shard:*`));
      expect({ outcome, registered: node.registered, serving: node.liveness.serving, whileFull, placed: placed.length, abandons: node.abandons }).toEqual({
        outcome: 'started',
        registered: ['n.1'],
        serving: true,
        whileFull: [],
        placed: 1,
        abandons: [],
      });
    } finally {
      await node.liveness.stop();
      await raw.close();
    }
  });
});

describe('a node stopped while a renew round is in flight', () => {
  it('on a Redis Cluster reports no state loss, sets no holdoff, registers no new id and leaves no node key or sentinel behind', async () => {
    const raw = await connectRedis({ url: started().url, cluster: true, commandTimeout: 5000, reconnectDelay: 100 });
    const { link, settled } = tracked(raw);
    const namespace = `stopround${process.pid}`;
    const clock = createManualClock();
    const ttl = 3000;
    const node = watchedLiveness(link, keyNames(namespace), ttl, clock);
    try {
      await node.liveness.start();
      expect((await keysOf(`${namespace}:shard:*`)).length).toBe(started().ports.length);
      // The renew round falls due and sends its first commands; the node stops before their replies.
      clock.advance(Math.floor(ttl / 3));
      await node.liveness.stop();
      await settled();
      expect({
        abandons: node.abandons,
        registered: node.registered,
        holdoff: await keysOf(`${namespace}:holdoff`),
        sentinels: await keysOf(`${namespace}:shard:*`),
        nodes: await keysOf(`${namespace}:node*`),
      }).toEqual({ abandons: [], registered: ['n.1'], holdoff: [], sentinels: [], nodes: [] });
    } finally {
      await raw.close();
    }
  });

  it('on a single Redis server reports no state loss, sets no holdoff, registers no new id and leaves no node key behind', async () => {
    const server = await startRedisServer();
    try {
      const raw = await connectRedis({ url: server.url, cluster: false, commandTimeout: 5000, reconnectDelay: 100 });
      const { link, settled } = tracked(raw);
      const namespace = 'stopsingle';
      const clock = createManualClock();
      const ttl = 3000;
      const node = watchedLiveness(link, keyNames(namespace), ttl, clock);
      try {
        await node.liveness.start();
        clock.advance(Math.floor(ttl / 3));
        await node.liveness.stop();
        await settled();
        const keys = await onPort(server.port, (c) => c.keys(`${namespace}:*`));
        expect({ abandons: node.abandons, registered: node.registered, keys }).toEqual({ abandons: [], registered: ['n.1'], keys: [] });
      } finally {
        await raw.close();
      }
    } finally {
      await server.stop();
    }
  });
});

describe('a node whose housekeeping waits on a call Redis has not answered', () => {
  // Housekeeping (a heartbeat, retried drops, the key set's trim) may wait on a
  // primary that stalls while the liveness key's own primary answers: each of
  // its calls may take the command timeout (2 s by default, whatever the node
  // TTL), and they run one after another.
  it('renews its liveness key every third of the node TTL meanwhile, keeps vouching, and runs no second housekeeping beside it', async () => {
    const raw = await connectRedis({ url: started().url, cluster: true, commandTimeout: 5000, reconnectDelay: 100 });
    const renews: string[] = [];
    const { link, settled } = tracked({
      ...raw,
      command: (key, args) => {
        if (args[0] === 'PEXPIRE' && key?.includes(':node:') === true) renews.push(key);
        return raw.command(key, args);
      },
    });
    const namespace = `slowtick${process.pid}`;
    const clock = createManualClock();
    const ttl = 3000;
    let ticks = 0;
    let answer: () => void = () => undefined;
    const hung = new Promise<undefined>((resolve) => (answer = () => resolve(undefined)));
    const node = watchedLiveness(link, keyNames(namespace), ttl, clock, async () => {
      ticks += 1;
      // The first round's housekeeping waits; the later ones end at once.
      if (ticks === 1) return hung;
      return undefined;
    });
    try {
      await node.liveness.start();
      // The first round renews, then its housekeeping waits; the key lives 0.9 x TTL from that renew.
      clock.advance(Math.floor(ttl / 3));
      await settled();
      expect({ renews: renews.length, ticks }).toEqual({ renews: 1, ticks: 1 });
      // Past the key's life from that renew, a third of the TTL at a time.
      for (let round = 0; round < 4; round++) {
        clock.advance(Math.floor(ttl / 3));
        await settled();
      }
      const whileHung = { renews: renews.length, ticks, abandons: [...node.abandons], serving: node.liveness.serving };
      answer();
      await settled();
      clock.advance(Math.floor(ttl / 3));
      await settled();
      expect({ whileHung, ticks, registered: node.registered }).toEqual({
        whileHung: { renews: 5, ticks: 1, abandons: [], serving: true },
        // Once it ended, the next round runs housekeeping again.
        ticks: 2,
        registered: ['n.1'],
      });
    } finally {
      answer();
      await node.liveness.stop();
      await raw.close();
    }
  });
});
