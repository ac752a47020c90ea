import { describe, expect, it } from 'vitest';
import { createClient } from 'redis';
import { silentLogger } from '../server/src/logger.js';
import { encodeKey, keyNames } from '../server/src/redis/key-codec.js';
import { listenerLog, useRedisStores } from '../server/test/redis-harness.js';
import { acquireInput } from '../server/test/server-harness.js';

// A node id whose key set lists many keys takes Redis and the node longer to
// clean up than the node TTL: the cleanup must not hold up the renewals of
// the node that runs it, nor hand the key set on to that node's own id.

const NODE_TTL = 2000;
/**
 * Keys in the key set: dropping them all at once keeps the command connection
 * busy past 0.9 x node TTL (the node gives its id up), where the cleanup in
 * batches lets every renew through on a loaded machine.
 */
const KEYS = 24_000;

/** Fills `set` with `KEYS` encoded keys, as a node whose sessions used that many would have. */
async function fillKeySet(redis: ReturnType<typeof createClient>, set: string): Promise<void> {
  const keys = Array.from({ length: KEYS }, (_, i) => encodeKey(`big:${i}`));
  for (let i = 0; i < keys.length; i += 5000) await redis.sAdd(set, keys.slice(i, i + 5000));
}

/**
 * Runs `acquire` until it is not refused for the holdoff after a loss of
 * Redis' state (one node TTL), `pace` between tries; any other refusal, or
 * one past three node TTLs, is thrown.
 */
async function acquireAfterHoldoff<T>(acquire: () => Promise<T>, pace: () => Promise<unknown>): Promise<T> {
  const deadline = Date.now() + 3 * NODE_TTL;
  for (;;) {
    try {
      return await acquire();
    } catch (error) {
      if (!/lost its state and is recovering/.test(String(error)) || Date.now() > deadline) throw error;
      await pace();
    }
  }
}

describe('a Redis node id that recorded many keys', () => {
  const stores = useRedisStores('bigkeys');

  it('once given up by its node, is dropped while the node keeps its new id, which then serves again', async () => {
    const namespace = stores.namespace();
    const names = keyNames(namespace);
    const info = listenerLog();
    const logger = {
      ...silentLogger,
      info: (_o: object, msg: string) => info.push(msg),
      warn: (_o: object, msg: string) => info.push(msg),
    };
    const log = listenerLog();
    const a = await stores.startStore({ url: stores.redis.url, namespace, nodeTtl: NODE_TTL, logger }, log.listener);
    expect(await a.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    const redis = createClient({ url: stores.redis.url });
    await redis.connect();
    try {
      const [id] = await redis.sMembers(names.nodes());
      if (id === undefined) throw new Error('no node id');
      await fillKeySet(redis, names.nodeKeys(id));
      // Redis loses the node's liveness key (as in a loss of its state): the node gives its id up, registers
      // under a new one, and refuses grants for one node TTL besides.
      await redis.del(names.node(id));
      await log.next(/^lost h k /, 3 * NODE_TTL);
      await info.next(/^dropped what previous ids of this node left$/, 30 * NODE_TTL);
      const again = await acquireAfterHoldoff(() => a.acquire('h', acquireInput(2, 'k', { acquireTimeout: 0 })), () => redis.ping());
      const ids = await redis.sMembers(names.nodes());
      const sets = await Promise.all(ids.map(async (n) => `${n}: ${await redis.sCard(names.nodeKeys(n))}`));
      // Redis answered every call on time: the node gave up its first id only, and its new id lists only `k`.
      expect({
        again: again.status,
        givenUp: info.lines.filter((l) => /lost contact with Redis/.test(l)),
        sets,
      }).toEqual({ again: 'granted', givenUp: [], sets: [`${ids[0]}: 1`] });
    } finally {
      await redis.quit();
    }
  }, 60_000);

  it('of a dead node, is dropped by a survivor that keeps every lock of its own', async () => {
    const namespace = stores.namespace();
    const names = keyNames(namespace);
    const bLog = listenerLog();
    const b = await stores.startStore({ url: stores.redis.url, namespace, nodeTtl: NODE_TTL }, bLog.listener);
    expect(await b.acquire('x', acquireInput(1, 'mine'))).toMatchObject({ status: 'granted' });
    const redis = createClient({ url: stores.redis.url });
    await redis.connect();
    try {
      // What a node killed (kill -9) leaves: its id registered, its liveness key gone, its key set.
      const dead = 'dead.1';
      await fillKeySet(redis, names.nodeKeys(dead));
      await redis.sAdd(names.nodes(), dead);
      const deadline = Date.now() + 30 * NODE_TTL;
      while ((await redis.sIsMember(names.nodes(), dead)) === 1 && Date.now() < deadline) await redis.ping();
      const ids = await redis.sMembers(names.nodes());
      const sets = await Promise.all(ids.map(async (n) => `${n}: ${await redis.sCard(names.nodeKeys(n))}`));
      expect({ dead: ids.includes(dead), told: bLog.lines, sets }).toEqual({ dead: false, told: [], sets: [`${ids[0]}: 1`] });
    } finally {
      await redis.quit();
    }
  }, 60_000);
});
