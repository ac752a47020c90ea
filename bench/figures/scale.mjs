// Figures of scale: memory per idle connection (server RSS) against a bare
// ws server, JS heap per held lock and per queued waiter, and how op and
// handoff latency grow with the number of keys and waiters.
import { join } from 'node:path';
import { SIZES } from '../lib/context.mjs';
import { runJsonChild } from '../lib/processes.mjs';
import { ratio } from '../lib/stats.mjs';
import { sizedTarget } from '../lib/targets.mjs';
import { closeAll } from '../lib/wire-client.mjs';
import { handoff, idleConnections, roundTrip } from '../measure/wire.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const n = (x) => x.toLocaleString('en-US');

/** RSS a server process gains per connection, after full GCs, with `count` idle connections open. */
async function rssPerConnection(ctx, name, script, count) {
  const server = await ctx.fresh(name, script, { nodeArgs: ['--expose-gc'] });
  try {
    const before = await server.call('mem');
    const clients = await idleConnections(server.info.url, count, script === 'lockwire');
    await sleep(500);
    const after = await server.call('mem');
    if (after.sessions !== count) throw new Error(`${name}: ${after.sessions} connections open, expected ${count}`);
    await closeAll(clients);
    return { perConnection: (after.rss - before.rss) / count, heapPerConnection: (after.heapUsed - before.heapUsed) / count, before, after };
  } finally {
    await server.stop();
  }
}

async function idleMemoryFigure(ctx) {
  const count = ctx.sizes.idleConnections;
  const bare = await rssPerConnection(ctx, 'idle-bare', 'echo', count);
  const own = await rssPerConnection(ctx, 'idle-lockwire', 'lockwire', count);
  const r = ratio(own.perConnection, bare.perConnection);
  return {
    raw: { bare, lockwire: own },
    rows: [{
      figure: `memory per idle connection at ${n(count)} connections (server RSS)`,
      value: own.perConnection, unit: 'B', anchor: bare.perConnection, anchorLabel: 'bare ws', ratio: r,
      ...sizedTarget(ctx.sizes, SIZES.full, ['idleConnections'], '<= 1.5x bare ws', `${n(SIZES.full.idleConnections)} connections`, r <= 1.5),
      note: `JS heap per connection ${Math.round(own.heapPerConnection)} B (bare ws ${Math.round(bare.heapPerConnection)} B)`,
    }],
  };
}

async function heapFigure(ctx) {
  const result = await runJsonChild(join(ctx.root, 'bench', 'measure', 'heap-child.mjs'), ['--expose-gc'], {
    BENCH_LOCKS: String(ctx.sizes.heapLocks),
    BENCH_WAITERS: String(ctx.sizes.heapWaiters),
  });
  return {
    raw: result,
    rows: [
      { figure: `JS heap per held lock, ${n(result.locks)} keys held (memory store)`, value: result.bytesPerLock, unit: 'B', ...sizedTarget(ctx.sizes, SIZES.full, ['heapLocks'], '<= 300 B', `${n(SIZES.full.heapLocks)} keys`, result.bytesPerLock <= 300), note: "includes the key string, not the session's id (its connection's)" },
      { figure: `JS heap per queued waiter, ${n(result.waiters)} waiters (memory store)`, value: result.bytesPerWaiter, unit: 'B', ...sizedTarget(ctx.sizes, SIZES.full, ['heapWaiters'], '<= 500 B', `${n(SIZES.full.heapWaiters)} waiters`, result.bytesPerWaiter <= 500) },
    ],
  };
}

/**
 * Cost growth: the same measurement at a small and a large size. Each is
 * taken with echo probes interleaved, and the ratio compares lockwire's
 * latency relative to the echo at each size, so that outside load between
 * the two runs does not pass for growth (the raw ratio is in the note).
 */
async function growthFigure(ctx) {
  const { growthKeys, growthWaiters, growthSamples } = ctx.sizes;
  const [fewKeys, manyKeys] = growthKeys;
  const echo = await ctx.shared('echo', 'echo');
  const server = await ctx.fresh('growth', 'lockwire');
  let few;
  let many;
  try {
    await server.call('preload', { count: fewKeys });
    few = await roundTrip(server.info.url, echo.info.url, { samples: growthSamples });
    await server.call('preload', { count: manyKeys - fewKeys });
    many = await roundTrip(server.info.url, echo.info.url, { samples: growthSamples });
  } finally {
    await server.stop();
  }
  const lockwire = await ctx.shared('lockwire', 'lockwire');
  const probe = await ctx.echoProbe();
  const [fewWaiters, manyWaiters] = growthWaiters;
  const short = await handoff(lockwire.info.url, { waiters: fewWaiters, samples: growthSamples, probe });
  const long = await handoff(lockwire.info.url, { waiters: manyWaiters, samples: growthSamples, probe });
  const relative = (run) => run.own.p50 / run.echo.p50;
  const keysRatio = ratio(relative(many), relative(few));
  const waitersRatio = ratio(relative(long), relative(short));
  const note = (large, small) =>
    `raw ratio ${ratio(large.own.p50, small.own.p50)}x; p99 ${large.own.p99.toFixed(3)} vs ${small.own.p99.toFixed(3)} ms`;
  return {
    raw: { keys: { [fewKeys]: few, [manyKeys]: many }, waiters: { [fewWaiters]: short, [manyWaiters]: long } },
    rows: [
      { figure: `op latency p50 with ${n(manyKeys)} keys held`, value: many.own.p50, unit: 'ms', anchor: few.own.p50, anchorLabel: `${n(fewKeys)} keys`, ratio: keysRatio, ...sizedTarget(ctx.sizes, SIZES.full, ['growthKeys'], '<= 1.3x', `${n(SIZES.full.growthKeys[1])} against ${n(SIZES.full.growthKeys[0])} keys`, keysRatio <= 1.3), note: note(many, few) },
      { figure: `handoff p50 with ${n(manyWaiters)} waiters`, value: long.own.p50, unit: 'ms', anchor: short.own.p50, anchorLabel: `${n(fewWaiters)} waiters`, ratio: waitersRatio, ...sizedTarget(ctx.sizes, SIZES.full, ['growthWaiters'], '<= 1.3x', `${n(SIZES.full.growthWaiters[1])} against ${n(SIZES.full.growthWaiters[0])} waiters`, waitersRatio <= 1.3), note: note(long, short) },
    ],
  };
}

/** The figures of this file, in run order. */
export const scaleFigures = [
  { name: 'idle-memory', run: idleMemoryFigure },
  { name: 'heap', run: heapFigure },
  { name: 'growth', run: growthFigure },
];
