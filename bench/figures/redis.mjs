// Figures against Redis: the Redis store (two lockwire nodes in their own
// processes, one redis-server) next to the memory store and a bare SET NX
// loop, and lockwire's pushed handoff next to polling Redis locks.
import { ratio } from '../lib/stats.mjs';
import { openBareLoad, pairHandoff, pollingHandoff, redlockHandoff } from '../measure/redis.mjs';
import { openLoad } from '../measure/wire.mjs';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

async function redisStoreFigure(ctx) {
  const { sizes } = ctx;
  const redis = await ctx.redis();
  const env = { BENCH_STORE: 'redis', BENCH_REDIS_URL: redis.url, BENCH_NAMESPACE: `bench${Date.now()}` };
  const node1 = await ctx.shared('redis-node-1', 'lockwire', { env });
  const node2 = await ctx.shared('redis-node-2', 'lockwire', { env });
  const memory = await ctx.shared('lockwire', 'lockwire');
  const handoffs = { samples: sizes.pairSamples };
  const memoryHandoff = await pairHandoff(memory.info.url, memory.info.url, handoffs);
  const crossNode = await pairHandoff(node1.info.url, node2.info.url, handoffs);
  // Slices rotate between the three loads so outside load weighs on all alike.
  const connections = sizes.redisConcurrency;
  const loads = {
    redisStore: await openLoad(node1.info.url, { connections, welcome: true }),
    bare: await openBareLoad(redis.url, { concurrency: connections }),
    memoryStore: await openLoad(memory.info.url, { connections, welcome: true }),
  };
  const runs = { redisStore: [], bare: [], memoryStore: [] };
  for (const load of Object.values(loads)) await load.measure(0.3);
  for (let i = 0; i < sizes.redisSlices; i++) {
    for (const [name, load] of Object.entries(loads)) runs[name].push(await load.measure(sizes.sliceSeconds));
  }
  for (const load of Object.values(loads)) await load.close();
  const redisStore = median(runs.redisStore);
  const bare = median(runs.bare);
  const memoryStore = median(runs.memoryStore);
  const vsBare = ratio(redisStore, bare);
  return {
    raw: { memoryHandoff, crossNode, throughput: runs },
    rows: [
      { figure: `Redis store throughput, uncontended, ${sizes.redisConcurrency} connections`, value: redisStore, unit: 'req/s', anchor: bare, anchorLabel: 'bare SET NX + Lua delete', ratio: vsBare, target: '>= 0.5x bare loop', met: vsBare >= 0.5, note: `memory store ${Math.round(memoryStore)} req/s (${ratio(redisStore, memoryStore)}x)` },
      { figure: 'Redis store cross-node handoff p50', value: crossNode.p50, unit: 'ms', anchor: memoryHandoff.p50, anchorLabel: 'memory store', ratio: ratio(crossNode.p50, memoryHandoff.p50), target: '<= 1 ms', met: crossNode.p50 <= 1, note: `p99 ${crossNode.p99.toFixed(3)} ms` },
    ],
  };
}

async function pollingFigure(ctx) {
  const { sizes } = ctx;
  const redis = await ctx.redis();
  const memory = await ctx.shared('lockwire', 'lockwire');
  const own = await pairHandoff(memory.info.url, memory.info.url, { samples: sizes.pairSamples });
  const redlock = await redlockHandoff(redis.url, { samples: sizes.redlockSamples });
  const polling = await pollingHandoff(redis.url, { samples: sizes.pollingSamples });
  const vsRedlock = ratio(redlock.p50, own.p50);
  return {
    raw: { lockwire: own, redlock, polling },
    rows: [
      { figure: 'handoff p50, node-redlock 5 defaults (retry 200 ms + 0-100 ms jitter)', value: redlock.p50, unit: 'ms', anchor: own.p50, anchorLabel: 'lockwire handoff', ratio: vsRedlock, target: 'lockwire >= 50x faster', met: vsRedlock >= 50, note: `p99 ${redlock.p99.toFixed(1)} ms, ${redlock.n} handoffs` },
      { figure: 'handoff p50, SET NX polled every 5 ms', value: polling.p50, unit: 'ms', anchor: own.p50, anchorLabel: 'lockwire handoff', ratio: ratio(polling.p50, own.p50), target: '-', met: null, note: `p99 ${polling.p99.toFixed(2)} ms` },
    ],
  };
}

/** The figures of this file, in run order. */
export const redisFigures = [
  { name: 'redis-store', run: redisStoreFigure },
  { name: 'polling', run: pollingFigure },
];
