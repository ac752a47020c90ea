// A lockwire server in its own process, started by the benchmark: the same
// createLockServer the `lockwire serve` command runs (default limits and
// heartbeat), with an IPC channel for the runner's measurements.
//   env BENCH_STORE=memory|redis, BENCH_REDIS_URL, BENCH_NAMESPACE
//   env BENCH_TREE=<checkout> runs that checkout's compiled server
//   env BENCH_COUNT_EVENT_ENCODES=1 counts JSON serialisations of `event` messages
// IPC commands: mem (after a full GC when --expose-gc), preload {count},
// counters, cpu (process.cpuUsage()), stop.
import { pathToFileURL } from 'node:url';

// BENCH_TREE: the checkout whose compiled server/dist to run (default this one).
const dist = process.env.BENCH_TREE ? pathToFileURL(`${process.env.BENCH_TREE}/server/dist/`) : new URL('../../server/dist/', import.meta.url);
const { createLockServer } = await import(new URL('index.js', dist).href);
const { createRedisStore } = await import(new URL('redis/redis-store.js', dist).href);

const counters = { eventEncodes: 0 };
if (process.env.BENCH_COUNT_EVENT_ENCODES === '1') {
  const stringify = JSON.stringify;
  JSON.stringify = function countingStringify(value, ...rest) {
    if (value !== null && typeof value === 'object' && value.type === 'event') counters.eventEncodes++;
    return stringify.call(JSON, value, ...rest);
  };
}

const store =
  process.env.BENCH_STORE === 'redis'
    ? createRedisStore({ url: process.env.BENCH_REDIS_URL ?? '', namespace: process.env.BENCH_NAMESPACE ?? 'bench' })
    : undefined;
// The benchmark drives single sessions at tens of thousands of frames per
// second and opens 10,000+ connections: lift the per-session rate limit and
// the connection cap where the server has them (older servers refuse
// unknown limits), so the figures measure the lock server, not its guards.
const generous = { maxConnections: 100_000, rateLimit: 10_000_000, rateBurst: 10_000_000 };
const start = (limits) => createLockServer({ port: 0, ...(store ? { store } : {}), ...(limits ? { limits } : {}) });
const server = await start(generous).catch((error) => {
  if (error instanceof RangeError && /is not a limit/.test(error.message)) return start(null);
  throw error;
});

function memory() {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
  }
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed, sessions: server.sessionCount() };
}

/**
 * Holds `count` more distinct keys in the store, in this process, as 1000
 * sessions that never connect (each within maxLocksPerSession).
 */
let preloaded = 0;
async function preload(count) {
  const perSession = 1000;
  for (let i = 0; i < count; i++) {
    const n = preloaded++;
    const session = `preload-${Math.floor(n / perSession)}`;
    await server.store.acquire(session, {
      ticket: n + 1,
      key: `held:${n}`,
      mode: 'exclusive',
      acquireTimeout: 0,
      holdTimeout: null,
      steal: false,
      meta: null,
    });
  }
  return { held: preloaded };
}

const commands = {
  mem: async () => memory(),
  preload: async ({ count }) => preload(count),
  counters: async () => ({ ...counters }),
  cpu: async () => process.cpuUsage(),
};

process.on('message', async (message) => {
  if (message.cmd === 'stop') {
    await server.close();
    process.exit(0);
  }
  try {
    const result = await commands[message.cmd](message);
    process.send({ call: message.call, result });
  } catch (error) {
    process.send({ call: message.call, error: String(error?.stack ?? error) });
  }
});
process.send({ ready: true, url: server.url });
