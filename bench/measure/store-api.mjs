// The stores measured through their own API, in the load generator's
// process, with no WebSocket in between: each worker is a session of its own
// that acquires and releases a key of its own, as the session layer calls
// the store for `acquire` then `release` (same input, same awaits). Compared
// to the bare SET NX + Lua delete loop (measure/redis.mjs), which also runs
// here on one node-redis client, this isolates what the store costs.
import { pathToFileURL } from 'node:url';
import { ratePerSecond } from '../lib/stats.mjs';
import { exclusiveAcquire } from '../lib/store-input.mjs';

/** The compiled server to load: `tree`'s, else BENCH_TREE's when set (`--tree`), else this checkout's. */
async function serverDist(tree = process.env.BENCH_TREE) {
  const dist = tree ? pathToFileURL(`${tree}/server/dist/`) : new URL('../../server/dist/', import.meta.url);
  return import(new URL('index.js', dist).href);
}

/** The listener a store needs: no request ever queues here, so nothing is settled through it. */
const quietListener = {
  granted: () => {},
  acquireTimedOut: () => {},
  waitDone: () => {},
  lost: () => {},
};

/**
 * A started store: `{ kind: 'redis', url, namespace, connections? }` or `{ kind: 'memory' }`,
 * optionally with `tree` (the checkout whose compiled server to load). The
 * namespace keeps its keys and broadcasts away from other nodes on the same
 * Redis. `close()` it when done.
 */
export async function startStore(spec) {
  const { createMemoryStore, createRedisStore } = await serverDist(spec.tree);
  const store =
    spec.kind === 'redis'
      ? createRedisStore({ url: spec.url, namespace: spec.namespace, ...(spec.connections === undefined ? {} : { connections: spec.connections }) })
      : createMemoryStore();
  await store.start(quietListener);
  return store;
}

/**
 * `concurrency` loops of acquire + release on `store`, each its own session
 * and key (uncontended). Like `openLoad`, it runs only while
 * `measure(seconds)` does and resolves store calls answered per second
 * (acquire and release count one each, as two requests do on the wire).
 */
export function openStoreLoad(store, { concurrency, prefix = 'api' }) {
  let ticket = 0;
  const loop = async (i, until) => {
    const session = `${prefix}-session-${i}`;
    const key = `${prefix}:${i}`;
    let done = 0;
    while (performance.now() < until) {
      const outcome = await store.acquire(session, exclusiveAcquire(++ticket, key));
      if (outcome.status !== 'granted') throw new Error(`uncontended acquire of ${key} was ${outcome.status}`);
      await store.release(session, key);
      done += 2;
    }
    return done;
  };
  return {
    measure: (seconds) => ratePerSecond(concurrency, seconds, loop),
  };
}
