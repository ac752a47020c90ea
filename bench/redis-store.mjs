#!/usr/bin/env node
// Measures, in one run, the Redis store against the memory store and against
// a bare SET NX / Lua-delete loop on the same Redis client library:
//   - handoff: a holder on node 1 releases, a waiter on node 2 is granted
//     (memory: both clients on the one node); p50/p99 of release -> grant;
//   - throughput: uncontended acquire+release per second on one node,
//     CONCURRENCY clients each on its own key.
//   - with --api: only the Redis store's own API in this process (the loop of
//     `npm run bench`'s store API figure), on a pinned redis-server, for
//     `node --cpu-prof bench/redis-store.mjs --api 10`; prints calls/s and
//     Redis' INFO commandstats per acquire+release.
//   - with --scripts [DIR...]: Redis' own time per FCALL of the acquire and
//     release scripts (INFO commandstats), for this checkout's compiled
//     scripts and each DIR's, in rounds alternating between them.
//   - with --floor: the store API loop, the bare loop, and between them the
//     least a pushed lock with fencing tokens does (SET NX PX and INCR of a
//     token in one script; compare, DEL and PUBLISH to a channel a client
//     listens on in the other) and the store's own acquire and release
//     scripts called from a bare loop (what the scripts cost without the
//     store's bookkeeping in this process), in alternating slices on one
//     pinned redis-server, as ratios to the bare loop.
// Needs the built dist (`npx tsc -b`) and redis-server on PATH.
// Usage: node bench/redis-store.mjs [seconds per throughput run, default 3]
//        node bench/redis-store.mjs --api [seconds, default 10]
//        node bench/redis-store.mjs --scripts [other checkout...]
//        node bench/redis-store.mjs --floor [seconds per slice, default 3]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';
import { createLockServer } from '../server/dist/index.js';
import { createRedisStore } from '../server/dist/redis/redis-store.js';
import { LockClient } from '../client/dist/node.js';

const API = process.argv[2] === '--api';
const FLOOR = process.argv[2] === '--floor';
const SECONDS = Number(process.argv[API || FLOOR ? 3 : 2] ?? (API ? 10 : 3));
const HANDOFFS = 500;
const CONCURRENCY = 8;

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'lockwire-bench-'));
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const c = createClient({ url, socket: { reconnectStrategy: false } });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.ping();
      c.destroy();
      break;
    } catch {
      c.destroy();
      if (i > 200) throw new Error('redis-server did not start');
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return { url, stop: () => (child.kill('SIGKILL'), rmSync(dir, { recursive: true, force: true })) };
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

function summarize(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

/** release on one client -> grant on the other, HANDOFFS times. */
async function handoff(urlA, urlB) {
  const a = await LockClient.connect(urlA);
  const b = await LockClient.connect(urlB);
  const samples = [];
  for (let i = 0; i < HANDOFFS + 20; i++) {
    const key = `h${i % 4}`;
    const lease = await a.acquire(key);
    const waiting = b.acquire(key);
    await new Promise((r) => setTimeout(r, 1)); // let the waiter queue
    const t0 = performance.now();
    await lease.release();
    const granted = await waiting;
    if (i >= 20) samples.push(performance.now() - t0);
    await granted.release();
  }
  await a.close();
  await b.close();
  return summarize(samples);
}

async function throughput(url) {
  const clients = await Promise.all(Array.from({ length: CONCURRENCY }, () => LockClient.connect(url)));
  let count = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(
    clients.map(async (client, i) => {
      while (performance.now() < end) {
        const lease = await client.acquire(`t${i}`);
        await lease.release();
        count++;
      }
    }),
  );
  await Promise.all(clients.map((c) => c.close()));
  return count / SECONDS;
}

const DELETE_IF_OWNER = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/** The same work without lockwire: SET NX PX, then a Lua compare-and-delete. */
async function bareThroughput(url) {
  const client = createClient({ url });
  await client.connect();
  let count = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, i) => {
      while (performance.now() < end) {
        const token = String(count);
        const ok = await client.set(`bare${i}`, token, { NX: true, PX: 30000 });
        if (ok !== 'OK') throw new Error('bare lock contended');
        await client.eval(DELETE_IF_OWNER, { keys: [`bare${i}`], arguments: [token] });
        count++;
      }
    }),
  );
  client.destroy();
  return count / SECONDS;
}

/** The floor of a handoff through Redis without push: the delete script, then the waiter's SET NX. */
async function bareHandoff(url) {
  const a = createClient({ url });
  const b = createClient({ url });
  await a.connect();
  await b.connect();
  const samples = [];
  for (let i = 0; i < HANDOFFS + 20; i++) {
    await a.set('bh', 'a', { NX: true });
    const t0 = performance.now();
    await a.eval(DELETE_IF_OWNER, { keys: ['bh'], arguments: ['a'] });
    const ok = await b.set('bh', 'b', { NX: true });
    if (ok !== 'OK') throw new Error('bare handoff failed');
    if (i >= 20) samples.push(performance.now() - t0);
    await b.del('bh');
  }
  a.destroy();
  b.destroy();
  return summarize(samples);
}

/** The store API loop alone, with Redis' command counts per acquire+release. */
async function apiOnly() {
  const { pinSelf, startRedis: startPinnedRedis } = await import('./lib/processes.mjs');
  const { openStoreLoad, startStore } = await import('./measure/store-api.mjs');
  pinSelf();
  const pinnedRedis = await startPinnedRedis();
  try {
    const store = await startStore({ kind: 'redis', url: pinnedRedis.url, namespace: 'api' });
    const load = openStoreLoad(store, { concurrency: CONCURRENCY });
    await load.measure(0.5);
    const admin = createClient({ url: pinnedRedis.url });
    await admin.connect();
    const redisCpu = async () => {
      const info = String(await admin.sendCommand(['INFO', 'cpu']));
      const field = (name) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? Number.NaN);
      return field('used_cpu_user') + field('used_cpu_sys');
    };
    await admin.sendCommand(['CONFIG', 'RESETSTAT']);
    const cpu0 = await redisCpu();
    const callsPerSecond = await load.measure(SECONDS);
    const cpu1 = await redisCpu();
    const stats = await admin.sendCommand(['INFO', 'commandstats']);
    await store.close();
    admin.destroy();
    const ops = (callsPerSecond * SECONDS) / 2;
    const perOp = {};
    for (const line of String(stats).split('\n')) {
      const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(line.trim());
      if (m) perOp[m[1]] = { callsPerAcquireRelease: Number((Number(m[2]) / ops).toFixed(3)), usecPerCall: Number(m[4]) };
    }
    const redisCpuShare = Number(((cpu1 - cpu0) / SECONDS).toFixed(3));
    const redisCpuMicrosPerAcquireRelease = Number((((cpu1 - cpu0) * 1e6) / ops).toFixed(1));
    process.stdout.write(`${JSON.stringify({ callsPerSecond, acquireReleases: Math.round(ops), redisCpuShare, redisCpuMicrosPerAcquireRelease, commandstats: perOp }, null, 2)}\n`);
  } finally {
    await pinnedRedis.stop();
  }
}

/** Median µs of Redis' time per FCALL, acquire+release pairs on 8 keys, per compiled tree. */
async function scriptCosts(trees) {
  const { pinSelf, startRedis: startPinnedRedis } = await import('./lib/processes.mjs');
  pinSelf();
  const pinnedRedis = await startPinnedRedis();
  const client = createClient({ url: pinnedRedis.url });
  await client.connect();
  try {
    const libs = [];
    for (const tree of trees) {
      const dist = new URL(`file://${tree}/server/dist/redis/`);
      const { scripts, scriptLibrary } = await import(new URL('scripts.js', dist).href);
      const { keyNames } = await import(new URL('key-codec.js', dist).href);
      await client.sendCommand(['FUNCTION', 'LOAD', 'REPLACE', scriptLibrary.source]);
      libs.push({ tree, scripts, names: keyNames(`s${libs.length}`), perCall: [] });
    }
    await client.set('live', '1');
    let call = 0;
    const pairs = async ({ scripts, names }, rounds) => {
      for (let r = 0; r < rounds; r++) {
        const replies = [];
        for (let i = 0; i < CONCURRENCY; i++) {
          const keys = names.lockKeys(`k${i}`);
          const head = ['node', '', String(Date.now()), `k${i}`, 'ns'];
          head[1] = String(++call);
          replies.push(client.sendCommand(['FCALL', scripts.acquire.fn, '6', ...keys, 'live', ...head, `s${i}`, String(call), 'exclusive', '', '', '0', '', '0', '1000']));
          replies.push(client.sendCommand(['FCALL', scripts.release.fn, '5', ...keys, 'node', String(++call), head[2], `k${i}`, 'ns', `s${i}`]));
        }
        await Promise.all(replies);
      }
    };
    for (let round = 0; round < 8; round++) {
      for (const lib of libs) {
        await pairs(lib, 100);
        await client.sendCommand(['CONFIG', 'RESETSTAT']);
        await pairs(lib, 1000);
        const stats = String(await client.sendCommand(['INFO', 'commandstats']));
        lib.perCall.push(Number(/cmdstat_fcall:.*usec_per_call=([\d.]+)/.exec(stats)?.[1]));
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const result = libs.map(({ tree, perCall }) => ({ tree, medianUsecPerFcall: median(perCall), min: Math.min(...perCall), max: Math.max(...perCall) }));
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    client.destroy();
    await pinnedRedis.stop();
  }
}

const FLOOR_ACQUIRE = "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', 30000) then return redis.call('INCR', KEYS[2]) end return 0";
const FLOOR_RELEASE =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) redis.call('PUBLISH', KEYS[3], ARGV[2]) return 1 end return 0";

/**
 * The store API loop and the bare loop, with the floor of a pushed lock
 * with fencing tokens between them: what any lock that hands out a token
 * per grant and pushes its release must at least do per acquire+release.
 */
async function floorComparison() {
  const { pinSelf, startRedis: startPinnedRedis } = await import('./lib/processes.mjs');
  const { openStoreLoad, startStore } = await import('./measure/store-api.mjs');
  const { openBareLoad } = await import('./measure/redis.mjs');
  const { ratePerSecond } = await import('./lib/stats.mjs');
  pinSelf();
  const pinnedRedis = await startPinnedRedis();
  const client = createClient({ url: pinnedRedis.url });
  const listener = createClient({ url: pinnedRedis.url });
  try {
    await Promise.all([client.connect(), listener.connect()]);
    await listener.subscribe('floor:events', () => {});
    let token = 0;
    const floorLoop = async (i, until) => {
      const key = `floor:${i}`;
      let done = 0;
      while (performance.now() < until) {
        const mine = String(token++);
        const granted = await client.eval(FLOOR_ACQUIRE, { keys: [key, 'floor:token'], arguments: [mine] });
        if (!granted) throw new Error('floor lock contended');
        await client.eval(FLOOR_RELEASE, {
          keys: [key, 'floor:token', 'floor:events'],
          arguments: [mine, JSON.stringify({ event: 'released', key, token: granted })],
        });
        done += 2;
      }
      return done;
    };
    // The store's own acquire and release scripts, called as the store calls them (same keys and
    // arguments, its node's liveness key present) but from a loop that does nothing else: what the
    // scripts cost, apart from the store's bookkeeping in this process.
    const { scripts, scriptLibrary } = await import('../server/dist/redis/scripts.js');
    const { keyNames } = await import('../server/dist/redis/key-codec.js');
    const names = keyNames('floorscripts');
    await client.sendCommand(['FUNCTION', 'LOAD', 'REPLACE', scriptLibrary.source]);
    await client.set(names.node('node'), '1');
    let call = 0;
    const scriptsLoop = async (i, until) => {
      const key = `k${i}`;
      const keys = names.lockKeys(key);
      let done = 0;
      while (performance.now() < until) {
        const now = String(Date.now());
        const head = ['node', String(++call), now, key, names.channelPrefix()];
        const granted = String(await client.sendCommand(['FCALL', scripts.acquire.fn, '6', ...keys, names.node('node'), ...head, `s${i}`, String(call), 'exclusive', '', '', '0', '', '0', '1000']));
        if (!granted.includes('"st":"granted"')) throw new Error(`scripts loop: acquire was ${granted}`);
        await client.sendCommand(['FCALL', scripts.release.fn, '5', ...keys, 'node', String(++call), now, key, names.channelPrefix(), `s${i}`]);
        done += 2;
      }
      return done;
    };
    const bare = await openBareLoad(pinnedRedis.url, { concurrency: CONCURRENCY });
    const store = await startStore({ kind: 'redis', url: pinnedRedis.url, namespace: 'floor' });
    const api = openStoreLoad(store, { concurrency: CONCURRENCY });
    const rounds = [];
    const ratio = (x, of) => Number((x / of).toFixed(2));
    for (let round = 0; round < 3; round++) {
      const bareRate = await bare.measure(SECONDS);
      const floorRate = await ratePerSecond(CONCURRENCY, SECONDS, floorLoop);
      const scriptsRate = await ratePerSecond(CONCURRENCY, SECONDS, scriptsLoop);
      const storeRate = await api.measure(SECONDS);
      rounds.push({
        bare: Math.round(bareRate),
        floorOverBare: ratio(floorRate, bareRate),
        storeScriptsOverBare: ratio(scriptsRate, bareRate),
        storeOverBare: ratio(storeRate, bareRate),
      });
    }
    await store.close();
    await bare.close();
    process.stdout.write(`${JSON.stringify({ sessions: CONCURRENCY, secondsPerSlice: SECONDS, rounds }, null, 2)}\n`);
  } finally {
    client.destroy();
    listener.destroy();
    await pinnedRedis.stop();
  }
}

if (FLOOR) {
  await floorComparison();
  process.exit(0);
}
if (API) {
  await apiOnly();
  process.exit(0);
}
if (process.argv[2] === '--scripts') {
  const { resolve } = await import('node:path');
  await scriptCosts([resolve(new URL('..', import.meta.url).pathname), ...process.argv.slice(3).map((dir) => resolve(dir))]);
  process.exit(0);
}

const redis = await startRedis();
try {
  // The load is far above a client's default frame rate limit: lift it, as a benchmark must.
  const limits = { rateLimit: 1e9, rateBurst: 1e9, maxPendingPerSession: 1e6 };
  const memory = await createLockServer({ port: 0, heartbeatInterval: 0, limits });
  const n1 = await createLockServer({ port: 0, heartbeatInterval: 0, limits, store: createRedisStore({ url: redis.url, namespace: 'bench' }) });
  const n2 = await createLockServer({ port: 0, heartbeatInterval: 0, limits, store: createRedisStore({ url: redis.url, namespace: 'bench' }) });

  const results = {
    handoffMs: {
      memory: await handoff(memory.url, memory.url),
      redisCrossNode: await handoff(n1.url, n2.url),
      bareSetNx: await bareHandoff(redis.url),
    },
    acquireReleasePerSecond: {
      memory: await throughput(memory.url),
      redisOneNode: await throughput(n1.url),
      bareSetNx: await bareThroughput(redis.url),
    },
  };
  const h = results.handoffMs;
  const t = results.acquireReleasePerSecond;
  const ratio = (x, y) => Number((x / y).toFixed(2));
  results.ratios = {
    handoffP50RedisOverMemory: ratio(h.redisCrossNode.p50, h.memory.p50),
    handoffP99RedisOverMemory: ratio(h.redisCrossNode.p99, h.memory.p99),
    handoffP50RedisOverBare: ratio(h.redisCrossNode.p50, h.bareSetNx.p50),
    handoffP99RedisOverBare: ratio(h.redisCrossNode.p99, h.bareSetNx.p99),
    throughputRedisOverMemory: ratio(t.redisOneNode, t.memory),
    throughputRedisOverBare: ratio(t.redisOneNode, t.bareSetNx),
  };
  results.setup = { handoffs: HANDOFFS, concurrency: CONCURRENCY, secondsPerThroughputRun: SECONDS, node: process.version };
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  await Promise.all([memory.close(), n1.close(), n2.close()]);
} finally {
  redis.stop();
}
