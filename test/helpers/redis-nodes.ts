import { afterAll, afterEach, beforeAll } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import { createRedisStore, type RedisStoreOptions } from '../../server/src/redis/redis-store.js';
import { RawClient } from './raw-client.js';
import { startRedisServer, type RedisServer } from './redis-server.js';

/**
 * Starts one lockwire node per URL in `urls`, each with a Redis store at
 * that URL and `store`'s other options (the namespace among them), in order.
 * Each node is pushed onto `started` as soon as it listens, so a teardown
 * closing `started` closes it even when a later one fails to start.
 */
export async function startNodesAt(
  urls: readonly string[],
  store: Omit<RedisStoreOptions, 'url'>,
  started: LockServer[],
): Promise<LockServer[]> {
  const nodes: LockServer[] = [];
  for (const url of urls) {
    const node = await createLockServer({ port: 0, heartbeatInterval: 0, store: createRedisStore({ ...store, url }) });
    started.push(node);
    nodes.push(node);
  }
  return nodes;
}

/** In-process lockwire nodes on one redis-server, torn down after each test. */
export interface RedisNodes {
  /** The redis-server, started before the block's first test and stopped after its last. */
  readonly redis: RedisServer;
  /**
   * Starts `count` nodes whose Redis stores share a namespace no other call
   * uses, so each test sees an empty lock table. `store` adds to the store
   * options (the URL and namespace are set here).
   */
  startNodes(count: number, store?: Omit<RedisStoreOptions, 'url' | 'namespace'>): Promise<LockServer[]>;
  /** Connects a raw client to `server`; it is terminated after the test. */
  connect(server: LockServer): Promise<RawClient>;
}

/**
 * Registers, in the calling `describe` block, the hooks that start a
 * redis-server for it and, after each test, terminate the clients and close
 * the nodes started through the returned {@link RedisNodes}. `label` starts
 * each namespace, so a leftover key names the file that wrote it.
 */
export function useRedisNodes(label: string): RedisNodes {
  let redis: RedisServer | undefined;
  const servers: LockServer[] = [];
  const clients: RawClient[] = [];
  let run = 0;

  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.stop();
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.terminate();
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  const started = (): RedisServer => {
    if (!redis) throw new Error('the redis-server starts in beforeAll');
    return redis;
  };
  return {
    get redis() {
      return started();
    },
    async startNodes(count, store = {}) {
      const namespace = `${label}${process.pid}x${++run}`;
      return startNodesAt(Array.from({ length: count }, () => started().url), { ...store, namespace }, servers);
    },
    async connect(server) {
      const client = await RawClient.connect(server.url);
      clients.push(client);
      return client;
    },
  };
}
