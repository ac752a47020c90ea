// Figures against Redis: lockwire's Redis store next to the memory store and
// to a bare SET NX + Lua-delete loop on the same Redis client library (the
// approach of bench/redis-store.mjs, here with the servers in their own
// processes), and the handoff of the usual polling Redis locks: node-redlock
// with its documented default retry settings, and a 5 ms SET NX polling loop.
import { Redis } from 'ioredis';
import Redlock from 'redlock';
import { createClient } from 'redis';
import { ratePerSecond, summarize } from '../lib/stats.mjs';
import { WireClient, closeAll } from '../lib/wire-client.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The compare-and-delete every Redis lock recipe releases with. */
const DELETE_IF_OWNER = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/**
 * Handoff between two connections, possibly on two nodes: A holds, B is
 * queued; A releases (timed to B's grant), then queues again behind B, and
 * the roles swap. Every handoff crosses nodes when `urlA !== urlB`.
 */
export async function pairHandoff(urlA, urlB, { samples, warmup = 50 }) {
  const key = `pair:${Math.random()}`;
  const a = await WireClient.connect(urlA, { welcome: true });
  const b = await WireClient.connect(urlB, { welcome: true });
  const first = await a.request({ op: 'acquire', key });
  if (!first.acquired) throw new Error(`could not take ${key}`);
  let waiting = b.send({ op: 'acquire', key });
  await waiting.queued;
  let [holder, waiter] = [a, b];
  const latencies = [];
  for (let i = 0; i < samples + warmup; i++) {
    const release = holder.send({ op: 'release', key });
    const { message, at } = await waiting.answer;
    if (!message.acquired) throw new Error(`handoff not granted: ${JSON.stringify(message)}`);
    if (i >= warmup) latencies.push(at - release.sentAt);
    const released = (await release.answer).message;
    if (!released.ok) throw new Error(`release failed: ${JSON.stringify(released)}`);
    waiting = holder.send({ op: 'acquire', key });
    await waiting.queued;
    [holder, waiter] = [waiter, holder];
  }
  await closeAll([a, b]);
  return summarize(latencies);
}

/**
 * The same work without lockwire: SET NX PX, then the Lua compare-and-delete,
 * `concurrency` loops on one node-redis client. Like `openLoad`, it runs only
 * while `measure(seconds)` does and resolves commands answered per second
 * (one request = one command).
 */
export async function openBareLoad(redisUrl, { concurrency, connections = 1 }) {
  // Session i runs on client i % connections: with more than one, Redis and this process overlap as
  // they do for a store on several command connections.
  const clients = [];
  for (let i = 0; i < connections; i++) {
    const client = createClient({ url: redisUrl });
    await client.connect();
    clients.push(client);
  }
  let token = 0;
  const loop = async (client, key, until) => {
    let done = 0;
    while (performance.now() < until) {
      const mine = String(token++);
      const ok = await client.set(key, mine, { NX: true, PX: 30000 });
      if (ok !== 'OK') throw new Error('bare lock contended');
      await client.eval(DELETE_IF_OWNER, { keys: [key], arguments: [mine] });
      done += 2;
    }
    return done;
  };
  return {
    measure: (seconds) => ratePerSecond(concurrency, seconds, (i, until) => loop(clients[i % connections], `bare:${i}`, until)),
    close: async () => {
      for (const client of clients) client.destroy();
    },
  };
}

/**
 * Handoff with node-redlock's defaults (retryCount 10, retryDelay 200 ms,
 * retryJitter 100 ms): the waiter is already retrying when the holder
 * releases, at a random point of its retry cycle; time from the release
 * call to the waiter's acquire resolving.
 */
export async function redlockHandoff(redisUrl, { samples }) {
  const connA = new Redis(redisUrl);
  const connB = new Redis(redisUrl);
  const a = new Redlock([connA]);
  const b = new Redlock([connB]);
  const latencies = [];
  for (let i = 0; i < samples; i++) {
    const resource = `redlock:${i}`;
    const lock = await a.acquire([resource], 30_000);
    const waiting = b.acquire([resource], 30_000);
    await sleep(50 + Math.random() * 300);
    const t0 = performance.now();
    await lock.release();
    const granted = await waiting;
    latencies.push(performance.now() - t0);
    await granted.release();
  }
  connA.disconnect();
  connB.disconnect();
  return summarize(latencies);
}

/** Handoff with a waiter polling SET NX every 5 ms; time from the release call to the waiter's SET succeeding. */
export async function pollingHandoff(redisUrl, { samples, pollMs = 5 }) {
  const a = createClient({ url: redisUrl });
  const b = createClient({ url: redisUrl });
  await a.connect();
  await b.connect();
  const latencies = [];
  for (let i = 0; i < samples; i++) {
    const key = `poll:${i}`;
    await a.set(key, 'a', { NX: true, PX: 30_000 });
    let releasedAt = 0;
    const waiting = (async () => {
      while ((await b.set(key, 'b', { NX: true, PX: 30_000 })) !== 'OK') await sleep(pollMs);
      return performance.now();
    })();
    await sleep(Math.random() * 20);
    releasedAt = performance.now();
    await a.eval(DELETE_IF_OWNER, { keys: [key], arguments: ['a'] });
    latencies.push((await waiting) - releasedAt);
    await b.del(key);
  }
  a.destroy();
  b.destroy();
  return summarize(latencies);
}
