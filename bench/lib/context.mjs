// The context a benchmark run shares: sizes (full or quick), server
// processes started on first use and stopped at the end, and the echo round
// trip that every latency figure is compared to.
import { join } from 'node:path';
import { echoProbe } from '../measure/wire.mjs';
import { startRedis, startServerProcess } from './processes.mjs';
import { WireClient, closeAll } from './wire-client.mjs';

export const SIZES = {
  full: {
    connections: 64, throughputSlices: 10, sliceSeconds: 1, rttSamples: 5000,
    handoffWaiters: [10, 100, 1000], handoffSamples: 2000, disconnectSamples: 300,
    watchers: 1000, watchEvents: 200, burstWatchers: 100, burstKeys: 100, burstRounds: 20, idleConnections: 10_000,
    heapLocks: 1_000_000, heapWaiters: 100_000,
    growthKeys: [1_000, 1_000_000], growthWaiters: [10, 10_000], growthSamples: 2000,
    redlockSamples: 40, pollingSamples: 200, pairSamples: 1000, redisConcurrency: 8, redisSlices: 5, storeApiSlices: 10,
    storeApiSweep: [1, 64], storeApiSweepSlices: 4,
  },
  quick: {
    connections: 64, throughputSlices: 4, sliceSeconds: 0.5, rttSamples: 1000,
    handoffWaiters: [10, 100, 1000], handoffSamples: 300, disconnectSamples: 50,
    watchers: 1000, watchEvents: 20, burstWatchers: 100, burstKeys: 100, burstRounds: 5, idleConnections: 2000,
    heapLocks: 100_000, heapWaiters: 20_000,
    growthKeys: [1_000, 50_000], growthWaiters: [10, 500], growthSamples: 200,
    redlockSamples: 8, pollingSamples: 50, pairSamples: 200, redisConcurrency: 8, redisSlices: 2, storeApiSlices: 3,
    storeApiSweep: [1, 64], storeApiSweepSlices: 2,
  },
};

/** Shared state of one run. */
export function createContext({ quick, profile, root, log }) {
  const sizes = quick ? SIZES.quick : SIZES.full;
  const bench = join(root, 'bench');
  const started = [];
  const cache = new Map();
  let redis = null;
  const probes = [];

  const start = async (name, script, options = {}) => {
    const nodeArgs = [...(options.nodeArgs ?? [])];
    if (profile && script === 'lockwire') nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${join(bench, 'results', 'profiles')}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`);
    const child = await startServerProcess(join(bench, 'servers', `${script}.mjs`), { ...options, nodeArgs });
    started.push(child);
    return child;
  };

  return {
    sizes,
    log,
    root,
    /** A server process kept for the whole run (started on first use). */
    async shared(name, script, options) {
      if (!cache.has(name)) cache.set(name, start(name, script, options));
      return cache.get(name);
    },
    /** A server process of its own; `stop()` it when done. */
    fresh: start,
    async redis() {
      redis ??= await startRedis();
      return redis;
    },
    /** A probe of the echo anchor (see `echoProbe`) on a connection of its own, closed with the run. */
    async echoProbe() {
      const echo = await this.shared('echo', 'echo');
      const client = await WireClient.connect(echo.info.url);
      probes.push(client);
      return echoProbe(client);
    },
    async close() {
      await Promise.all(started.map((child) => child.stop()));
      await closeAll(probes);
      if (redis) await redis.stop();
    },
  };
}
