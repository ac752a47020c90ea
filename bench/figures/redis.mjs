// Figures against Redis: the Redis store (two lockwire nodes in their own
// processes, one redis-server) next to the memory store and a bare SET NX
// loop, end to end over WebSocket and through the store's own API in this
// process; and lockwire's pushed handoff next to polling Redis locks.
import { createClient } from 'redis';
import { ratio } from '../lib/stats.mjs';
import { ioCalls } from '../lib/processes.mjs';
import { openBareLoad, pairHandoff, pollingHandoff, redlockHandoff } from '../measure/redis.mjs';
import { openStoreLoad, startStore } from '../measure/store-api.mjs';
import { DEFAULT_REDIS_CONNECTIONS as DEFAULT_STORE_CONNECTIONS } from '../../server/dist/redis/command-pool.js';
import { openLoad } from '../measure/wire.mjs';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const round2 = (x) => Math.round(x * 100) / 100;
const round1 = (x) => Math.round(x * 10) / 10;

/** Redis' CPU time (user + system, µs) as `INFO cpu` reports it, read on a connection of its own. */
async function openRedisCpu(url) {
  const client = createClient({ url });
  await client.connect();
  return {
    async micros() {
      const info = String(await client.sendCommand(['INFO', 'cpu']));
      const field = (name) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? Number.NaN);
      return (field('used_cpu_user') + field('used_cpu_sys')) * 1e6;
    },
    close: async () => client.destroy(),
  };
}

/**
 * The Redis store through its own API in this process, against the bare
 * loop on one node-redis client (also in this process) and the memory store
 * through the same API: slices rotate between the three, and each ratio is
 * the median of the per-slice ratios (a slice of the store over the bare or
 * memory slice of the same round).
 */
async function storeApiThroughput(ctx, redis) {
  const { sizes } = ctx;
  const concurrency = sizes.redisConcurrency;
  const redisStore = await startStore({ kind: 'redis', url: redis.url, namespace: `api${Date.now()}` });
  const memoryStore = await startStore({ kind: 'memory' });
  const bare = await openBareLoad(redis.url, { concurrency });
  // Beside the figure: the store on one command connection, and the bare loop on as many clients as
  // the store has command connections by default, so that each run shows what the connections give.
  const oneConnection = await startStore({ kind: 'redis', url: redis.url, namespace: `one${Date.now()}`, connections: 1 });
  const barePooled = await openBareLoad(redis.url, { concurrency, connections: DEFAULT_STORE_CONNECTIONS });
  // --base=DIR: the Redis store of another checkout joins the rotation (before/after in one run).
  const baseTree = process.env.BENCH_BASE_TREE;
  const baseStore = baseTree ? await startStore({ kind: 'redis', url: redis.url, namespace: `base${Date.now()}`, tree: baseTree }) : null;
  const loads = {
    redisStore: openStoreLoad(redisStore, { concurrency }),
    bare,
    memoryStore: openStoreLoad(memoryStore, { concurrency }),
    oneConnection: openStoreLoad(oneConnection, { concurrency, prefix: 'one' }),
    barePooled,
    ...(baseStore ? { baseStore: openStoreLoad(baseStore, { concurrency }) } : {}),
  };
  const runs = Object.fromEntries(Object.keys(loads).map((name) => [name, []]));
  // CPU per call on each side, summed over the slices: this process (the store or the bare loop's client) and Redis.
  const cpu = Object.fromEntries(Object.keys(loads).map((name) => [name, { calls: 0, clientMicros: 0, redisMicros: 0 }]));
  // Read and write system calls per call on each side, where Linux counts them (`ioCalls`).
  const io = Object.fromEntries(Object.keys(loads).map((name) => [name, { client: { reads: 0, writes: 0 }, redis: { reads: 0, writes: 0 } }]));
  const sides = () => ({ client: ioCalls(), redis: ioCalls(redis.pid) });
  const redisCpu = await openRedisCpu(redis.url);
  try {
    for (const load of Object.values(loads)) await load.measure(0.3);
    for (let i = 0; i < sizes.storeApiSlices; i++) {
      for (const [name, load] of Object.entries(loads)) {
        const redis0 = await redisCpu.micros();
        const io0 = sides();
        const client0 = process.cpuUsage();
        const rate = await load.measure(sizes.sliceSeconds);
        const client = process.cpuUsage(client0);
        const io1 = sides();
        for (const side of ['client', 'redis']) {
          const [from, to] = [io0[side], io1[side]];
          io[name][side].reads += from && to ? to.reads - from.reads : Number.NaN;
          io[name][side].writes += from && to ? to.writes - from.writes : Number.NaN;
        }
        cpu[name].redisMicros += (await redisCpu.micros()) - redis0;
        cpu[name].clientMicros += client.user + client.system;
        cpu[name].calls += rate * sizes.sliceSeconds;
        runs[name].push(rate);
      }
    }
  } finally {
    await redisCpu.close();
    await bare.close();
    await barePooled.close();
    await oneConnection.close();
    await redisStore.close();
    await memoryStore.close();
    await baseStore?.close();
  }
  const perSlice = (of, to) => runs[of].map((x, i) => x / (runs[to][i] ?? Number.NaN));
  const vsBare = perSlice('redisStore', 'bare');
  const vsMemory = perSlice('redisStore', 'memoryStore');
  const perCall = (name) => ({
    client: round1(cpu[name].clientMicros / cpu[name].calls),
    redis: round1(cpu[name].redisMicros / cpu[name].calls),
  });
  // null where the system calls were not counted.
  const ioPerCall = (name) => {
    const per = (n) => round2(n / cpu[name].calls);
    const { client, redis: server } = io[name];
    if ([client.reads, client.writes, server.reads, server.writes].some(Number.isNaN)) return null;
    return { client: { reads: per(client.reads), writes: per(client.writes) }, redis: { reads: per(server.reads), writes: per(server.writes) } };
  };
  return {
    runs,
    cpuPerCall: { redisStore: perCall('redisStore'), bare: perCall('bare') },
    ioPerCall: { redisStore: ioPerCall('redisStore'), bare: ioPerCall('bare') },
    redisStore: median(runs.redisStore),
    bare: median(runs.bare),
    memoryStore: median(runs.memoryStore),
    vsBare: round2(median(vsBare)),
    vsBareRange: [round2(Math.min(...vsBare)), round2(Math.max(...vsBare))],
    vsMemory: round2(median(vsMemory)),
    oneConnection: { store: median(runs.oneConnection), vsBare: round2(median(perSlice('oneConnection', 'bare'))) },
    barePooled: { rate: median(runs.barePooled), storeVs: round2(median(perSlice('redisStore', 'barePooled'))) },
    ...(baseStore ? { base: { tree: baseTree, store: median(runs.baseStore), vsBare: round2(median(perSlice('baseStore', 'bare'))) } } : {}),
  };
}

/**
 * The same store API loop against the bare loop at other concurrencies, to
 * show where the ratio comes from: one session is bound by round trips
 * (both loops wait on the wire), many sessions by Redis' CPU per call (both
 * loops keep Redis busy), so the ratio there is the two loops' Redis time
 * per call. Slices alternate between the two loads at each concurrency.
 */
async function storeApiSweep(ctx, redis) {
  const { sizes } = ctx;
  const points = [];
  for (const concurrency of sizes.storeApiSweep) {
    const store = await startStore({ kind: 'redis', url: redis.url, namespace: `sweep${concurrency}-${Date.now()}` });
    const bare = await openBareLoad(redis.url, { concurrency });
    const storeLoad = openStoreLoad(store, { concurrency, prefix: `sweep${concurrency}` });
    const ratios = [];
    const rates = { store: [], bare: [] };
    try {
      await storeLoad.measure(0.3);
      await bare.measure(0.3);
      for (let i = 0; i < sizes.storeApiSweepSlices; i++) {
        const s = await storeLoad.measure(sizes.sliceSeconds);
        const b = await bare.measure(sizes.sliceSeconds);
        rates.store.push(s);
        rates.bare.push(b);
        ratios.push(s / b);
      }
    } finally {
      await bare.close();
      await store.close();
    }
    points.push({
      concurrency,
      store: median(rates.store),
      bare: median(rates.bare),
      vsBare: round2(median(ratios)),
      vsBareRange: [round2(Math.min(...ratios)), round2(Math.max(...ratios))],
    });
  }
  return points;
}

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
  const api = await storeApiThroughput(ctx, redis);
  const sweep = await storeApiSweep(ctx, redis);
  return {
    raw: { memoryHandoff, crossNode, throughput: runs, storeApi: api, storeApiSweep: sweep },
    rows: [
      { figure: `Redis store API throughput in process, uncontended, ${sizes.redisConcurrency} concurrent sessions`, value: api.redisStore, unit: 'calls/s', anchor: api.bare, anchorLabel: 'bare SET NX + Lua delete, same process', ratio: api.vsBare, target: '>= 0.5x bare loop', met: api.vsBare >= 0.5, note: `median of ${sizes.storeApiSlices} per-slice ratios, range ${api.vsBareRange[0]}-${api.vsBareRange[1]}x; memory store ${Math.round(api.memoryStore)} calls/s (${api.vsMemory}x); the store on one command connection ${api.oneConnection.vsBare}x; the bare loop on ${DEFAULT_STORE_CONNECTIONS} connections ${Math.round(api.barePooled.rate)} calls/s (the store ${api.barePooled.storeVs}x of it)${api.base ? `; --base store ${api.base.vsBare}x` : ''}` },
      ...sweep.map((point) => ({ figure: `Redis store API throughput in process, uncontended, ${point.concurrency} concurrent session${point.concurrency === 1 ? '' : 's'}`, value: point.store, unit: 'calls/s', anchor: point.bare, anchorLabel: 'bare SET NX + Lua delete, same process', ratio: point.vsBare, target: `- (the ${sizes.redisConcurrency}-session row is the store figure)`, met: null, note: `median of ${sizes.storeApiSweepSlices} per-slice ratios, range ${point.vsBareRange[0]}-${point.vsBareRange[1]}x` })),
      { figure: 'Redis store API: CPU per call, the store\'s process + Redis', value: api.cpuPerCall.redisStore.client + api.cpuPerCall.redisStore.redis, unit: 'µs', anchor: api.cpuPerCall.bare.client + api.cpuPerCall.bare.redis, anchorLabel: 'bare loop per command, client + Redis', ratio: ratio(api.cpuPerCall.redisStore.client + api.cpuPerCall.redisStore.redis, api.cpuPerCall.bare.client + api.cpuPerCall.bare.redis), target: '-', met: null, note: `store ${api.cpuPerCall.redisStore.client} + Redis ${api.cpuPerCall.redisStore.redis} µs; bare loop ${api.cpuPerCall.bare.client} + ${api.cpuPerCall.bare.redis} µs; on one connection the two processes take turns (throughput follows the sum), on the store's ${DEFAULT_STORE_CONNECTIONS} they overlap (it follows the larger side); each side alone, busy all the time, bounds the store at ${ceiling(api.cpuPerCall.redisStore.redis, api.bare)} (Redis) and ${ceiling(api.cpuPerCall.redisStore.client, api.bare)} (the store's process)${ioNote(api.ioPerCall)}` },
      { figure: `Redis store throughput over WebSocket (end to end), uncontended, ${sizes.redisConcurrency} connections`, value: redisStore, unit: 'req/s', anchor: bare, anchorLabel: 'bare SET NX + Lua delete', ratio: vsBare, target: '- (the API row is the store figure)', met: null, note: `memory store ${Math.round(memoryStore)} req/s (${ratio(redisStore, memoryStore)}x)` },
      { figure: 'Redis store cross-node handoff p50', value: crossNode.p50, unit: 'ms', anchor: memoryHandoff.p50, anchorLabel: 'memory store', ratio: ratio(crossNode.p50, memoryHandoff.p50), target: '<= 1 ms', met: crossNode.p50 <= 1, note: `p99 ${crossNode.p99.toFixed(3)} ms` },
    ],
  };
}

/** The read and write system calls per call of both sides, where they were counted. */
function ioNote({ redisStore, bare }) {
  if (!redisStore || !bare) return '';
  const pair = (side) => `${side.reads} reads + ${side.writes} writes`;
  return `; system calls per call: the store's process ${pair(redisStore.client)}, Redis ${pair(redisStore.redis)}; the bare loop's ${pair(bare.client)}, Redis ${pair(bare.redis)}`;
}

/** The rate one process spending `micros` of CPU per call reaches when busy all the time, and its ratio to `bare` calls/s. */
function ceiling(micros, bare) {
  const rate = 1e6 / micros;
  return `${Math.round(rate).toLocaleString('en-US')} calls/s (${ratio(rate, bare)}x the bare loop)`;
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
