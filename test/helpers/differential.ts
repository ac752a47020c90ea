import { afterAll, beforeAll } from 'vitest';
import type { ConformanceTarget } from './conformance-target.js';
import { redisTarget } from './redis-target.js';
import { startRedisServer, type RedisServer } from './redis-server.js';

/** A linear congruential generator: the same seed gives the same sequence in [0, 1). */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** Picks an item of `list` with `next`; fails on an empty list. */
export function pickWith<T>(next: () => number, list: readonly T[]): T {
  const item = list[Math.floor(next() * list.length)];
  if (item === undefined) throw new Error('picked from an empty list');
  return item;
}

/**
 * `nodes` lockwire nodes on one `redis-server` that the calling test file
 * starts before its tests and stops after them. Clients connect round-robin
 * over the nodes, so the first two of a test are on different nodes.
 */
export function useRedisNodes(nodes: number): ConformanceTarget {
  let redis: RedisServer | undefined;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.stop();
  });
  return redisTarget({
    name: `redis, ${nodes} nodes`,
    nodes,
    url: () => {
      if (!redis) throw new Error('redis-server is not started');
      return redis.url;
    },
  });
}
