/**
 * The servers a soak runs against, all started by the soak itself on
 * loopback and stopped by PID: one memory-store node, or three Redis-store
 * nodes on a redis-server of their own, or on a Redis Cluster of three
 * primaries of their own. A Redis node can be killed (SIGKILL) and replaced
 * by a fresh one.
 */
import { startLockwireProcess, type LockwireProcess } from '../helpers/lockwire-process.js';
import { startRedisCluster, startRedisServer } from '../helpers/redis-server.js';

export type SoakStore = 'memory' | 'redis' | 'redis-cluster';

/** Whether the store's nodes share a table in Redis (they can be killed and replaced). */
export const onRedis = (store: SoakStore): boolean => store !== 'memory';

export interface DeploymentOptions {
  store: SoakStore;
  /** Heartbeat interval of every node, ms. */
  heartbeat: number;
  /** Node TTL of the Redis nodes, ms. */
  nodeTtl: number;
  /** Redis nodes. Default 3. */
  nodes?: number;
  /** Server log lines (stderr of the nodes), each prefixed with its node's PID. Default: dropped. */
  onLog?: (line: string) => void;
  /** The nodes' `--log-level`. Default `warn`. */
  logLevel?: string;
}

/** A running deployment. */
export interface Deployment {
  readonly store: SoakStore;
  /** The nodes currently running. */
  nodes(): readonly LockwireProcess[];
  /** Kills `node` with SIGKILL and starts a replacement (Redis only). */
  replace(node: LockwireProcess): Promise<LockwireProcess>;
  /** Stops every node (SIGKILL) and the Redis servers. */
  stop(): Promise<void>;
}

/** Starts the deployment of `options.store`; on failure, stops whatever it started. */
export async function startDeployment(options: DeploymentOptions): Promise<Deployment> {
  let redis: { readonly url: string; stop(): Promise<void> } | undefined;
  const running: LockwireProcess[] = [];
  const startNode = async () => {
    let pid = 0;
    const node = await startLockwireProcess({
      heartbeat: options.heartbeat,
      ...(options.logLevel ? { logLevel: options.logLevel } : {}),
      ...(options.onLog ? { onLog: (line: string) => options.onLog?.(`${pid} ${line}`) } : {}),
      ...(redis && options.store !== 'memory' ? { store: options.store, redisUrl: redis.url, nodeTtl: options.nodeTtl } : {}),
    });
    pid = node.pid;
    return node;
  };
  const stop = async () => {
    await Promise.all(running.splice(0).map((node) => node.kill()));
    await redis?.stop();
  };
  try {
    if (onRedis(options.store)) {
      redis = options.store === 'redis-cluster' ? await startRedisCluster() : await startRedisServer();
      for (let i = 0; i < (options.nodes ?? 3); i++) running.push(await startNode());
    } else {
      running.push(await startNode());
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    store: options.store,
    nodes: () => [...running],
    async replace(node) {
      if (!onRedis(options.store)) throw new Error('only Redis nodes are replaced');
      const index = running.indexOf(node);
      if (index < 0) throw new Error('not a running node');
      running.splice(index, 1);
      await node.kill();
      const fresh = await startNode();
      running.push(fresh);
      return fresh;
    },
    stop,
  };
}
