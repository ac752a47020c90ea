import { afterAll, beforeAll } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import { createRedisStore } from '../../server/src/redis/redis-store.js';
import type { ConformanceTarget } from './conformance-target.js';
import { startRedisCluster, startRedisServer } from './redis-server.js';

export interface RedisTargetOptions {
  name: string;
  /** The Redis URL (comma-separated root nodes with `cluster`), read when a deployment starts. */
  url: () => string;
  cluster?: boolean;
  /** Number of lockwire nodes sharing the table. Default 3. */
  nodes?: number;
  nodeTtl?: number;
}

/**
 * Several lockwire nodes on port 0 sharing one Redis store, driven by the
 * suite's manual clock (node liveness runs on real time). Each start uses a
 * fresh namespace, so it begins with an empty table while tokens, seeded
 * from Redis' clock, keep rising across starts.
 */
export function redisTarget(options: RedisTargetOptions): ConformanceTarget {
  let starts = 0;
  const run = `${process.pid}-${Date.now().toString(36)}`;
  return {
    name: options.name,
    manualClock: true,
    crossKeyEventOrder: !options.cluster,
    async start({ clock, limits, auth }) {
      const namespace = `lwt-${run}-${++starts}`;
      const servers: LockServer[] = [];
      try {
        for (let i = 0; i < (options.nodes ?? 3); i++) {
          const store = createRedisStore({
            url: options.url(),
            cluster: options.cluster ?? false,
            namespace,
            nodeTtl: options.nodeTtl ?? 5000,
            clock,
            limits,
          });
          const server = await createLockServer({
            port: 0,
            host: '127.0.0.1',
            clock,
            limits,
            store,
            heartbeatInterval: 0,
            ...(auth ? { auth } : {}),
          });
          servers.push(server);
        }
      } catch (error) {
        await Promise.allSettled(servers.map((s) => s.close()));
        throw error;
      }
      let closing: Promise<void> | undefined;
      return {
        urls: servers.map((s) => s.url),
        close: () => (closing ??= Promise.all(servers.map((s) => s.close())).then(() => {})),
      };
    },
  };
}

/**
 * `nodes` lockwire nodes on a `redis-server` (or, with `cluster`, a Redis
 * Cluster of three primaries) that the calling test file starts before its
 * tests and stops after them. Clients connect round-robin over the nodes,
 * so the first two of a test are on different nodes.
 */
export function useRedisTarget(nodes: number, { cluster = false }: { cluster?: boolean } = {}): ConformanceTarget {
  let redis: { url: string; stop(): Promise<void> } | undefined;
  beforeAll(async () => {
    redis = cluster ? await startRedisCluster() : await startRedisServer();
  });
  afterAll(async () => {
    await redis?.stop();
  });
  return redisTarget({
    name: `${cluster ? 'redis cluster' : 'redis'}, ${nodes} nodes`,
    cluster,
    nodes,
    url: () => {
      if (!redis) throw new Error(cluster ? 'the Redis Cluster is not started' : 'redis-server is not started');
      return redis.url;
    },
  });
}
