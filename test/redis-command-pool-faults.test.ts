import calculateSlot from 'cluster-key-slot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import type { LockStore, StoreReadiness } from '../server/src/store.js';
import { encodeKey } from '../server/src/redis/key-codec.js';
import { listenerLog, useRedisStores } from '../server/test/redis-harness.js';
import { acquireInput, quietListener } from '../server/test/server-harness.js';
import { onPort, startRedisServer } from './helpers/redis-server.js';
import { startTapProxy } from './helpers/tap-proxy.js';

// A node's command connections to a single Redis server (see CommandPool):
// the SADD recording a new key in the node's key set must reach Redis before
// the key's first step, or fail with it, whatever connection each travels
// on; and connections that carry nothing for a while must not be closed by
// Redis' idle timeout, which the node would take for Redis going away.

const NODE_TTL = 500;

describe('a node with several command connections to one Redis server', () => {
  const stores = useRedisStores('poolsadd');

  it.each([1, 2])("a dead node's lock is released even when the SADD recording its key failed (connections: %i)", async (connections) => {
    const namespace = stores.namespace();
    let cutSadd = false;
    const tap = await startTapProxy(stores.redis.port, ({ client, upstream }) => {
      client.on('data', (chunk: Buffer) => {
        const text = chunk.toString('latin1');
        if (cutSadd && /SADD/.test(text) && text.includes(`${namespace}:nk:{`)) {
          // The connection carrying the node's key-set SADD breaks (a reset) before Redis runs it.
          cutSadd = false;
          client.resetAndDestroy();
          upstream.destroy();
          return;
        }
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => client.write(chunk));
    });
    try {
      const aLog = listenerLog();
      const a = await stores.startStore({ url: tap.url, namespace, nodeTtl: NODE_TTL, connections, tolerateCloseFailure: true }, aLog.listener);
      const [aId] = await onPort(stores.redis.port, (admin) => admin.sMembers(`${namespace}:nodes`));
      if (aId === undefined) throw new Error('no node id');
      const bLog = listenerLog();
      const b = await stores.startStore({ url: stores.redis.url, namespace, nodeTtl: NODE_TTL }, bLog.listener);
      // A key whose records are on the other pool connection than node a's key set.
      const nkConnection = calculateSlot(`${namespace}:nk:{${aId}}`) % 2;
      let key = '';
      for (let i = 0; ; i++) {
        key = `key-${i}`;
        if (connections === 1 || calculateSlot(`${namespace}:{${encodeKey(key)}}:k`) % 2 !== nkConnection) break;
      }
      cutSadd = true;
      const held = await a.acquire('h', acquireInput(1, key)).then(
        (outcome) => `answered ${outcome.status}`,
        (error: { code?: string }) => `failed ${error.code}`,
      );
      const recorded = await onPort(stores.redis.port, (admin) => admin.sIsMember(`${namespace}:nk:{${aId}}`, encodeKey(key)).then((n) => Number(n) === 1));
      // Node a crashes: every connection of it is gone for good.
      tap.close();
      const w = await b.acquire('w', acquireInput(2, key));
      const released = w.status === 'granted' || (await bLog.next(/^granted w #2 /, 6 * NODE_TTL).then(() => true, () => false));
      // On one connection the acquire failed with the SADD before it; a lock granted must be recorded and released.
      if (held === 'answered granted') expect({ held, recorded, released }).toEqual({ held, recorded: true, released: true });
      else expect({ held, released }).toEqual({ held: 'failed store_unavailable', released: true });
    } finally {
      tap.close();
    }
  });
});

/** What the Redis store, which always has `readiness`, reports. */
function readinessOf(store: LockStore): StoreReadiness {
  const readiness = store.readiness?.();
  if (!readiness) throw new Error('the Redis store reports its readiness');
  return readiness;
}

describe('a node on a Redis that closes idle connections (redis.conf timeout)', () => {
  let redis: import('./helpers/redis-server.js').RedisServer;
  const opened: Array<{ close(): Promise<void> }> = [];
  beforeAll(async () => {
    redis = await startRedisServer(['--timeout', '1']);
  });
  afterAll(async () => {
    await Promise.all(opened.map((s) => s.close()));
    await redis.stop();
  });

  it.each([2, 8])('an idle node stays ready: none of its command connections is left idle long enough to be closed (connections: %i)', async (connections) => {
    const store = createRedisStore({ url: redis.url, namespace: `poolidle${process.pid}x${connections}`, nodeTtl: 3000, connections });
    opened.push(store);
    await store.start(quietListener());
    expect(readinessOf(store).ready).toBe(true);
    // Redis closes a connection idle for a second: within four seconds an idle pool connection is closed
    // and the node goes not ready; its readiness is read every few ms meanwhile.
    const notReady = await new Promise<string | null>((resolve) => {
      const started = performance.now();
      const timer = setInterval(() => {
        const readiness = readinessOf(store);
        if (!readiness.ready) {
          clearInterval(timer);
          resolve(`not ready after ${Math.round(performance.now() - started)} ms: ${readiness.reason}`);
        } else if (performance.now() - started > 4000) {
          clearInterval(timer);
          resolve(null);
        }
      }, 5);
    });
    expect(notReady).toBeNull();
  });
});
