import { performance } from 'node:perf_hooks';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import type { StoreLimits } from '../store.js';
import type { RedisLink } from './redis-link.js';
import type { RedisTlsOptions } from './redis-tls.js';

/**
 * Options of `createRedisStore`: only `url` is required. An invalid
 * `namespace` throws at creation; a Redis that cannot be reached, or TLS
 * settings that do not fit the URL, fail the store's `start`.
 */
export interface RedisStoreOptions {
  /** `redis://host:port`; with `cluster`, one or more cluster nodes, comma-separated. */
  url: string;
  /** Connect to a Redis Cluster instead of a single server. Default false. */
  cluster?: boolean;
  /**
   * TLS of a `rediss://` URL: the CA bundle that signs the server's
   * certificate (default: the system CAs) and a client certificate and key
   * (for `tls-auth-clients yes`), as PEM strings or Buffers. On a cluster
   * every node is reached with them. `start` fails when they are given with
   * a `redis://` URL, or a certificate without its key, and at once when the
   * server's certificate is not trusted or the handshake is refused.
   */
  tls?: RedisTlsOptions;
  /**
   * Prefix of every key and channel: 1 to 64 of `A-Za-z0-9_.-` (else `createRedisStore` throws). Default `lw`.
   * A table is one namespace in one database; channels carry a database but 0, as pub/sub spans databases.
   */
  namespace?: string;
  /**
   * ms within which the survivors release the locks of a dead node, and after
   * which a node cut off from Redis reports its holders' locks lost. Default 5000.
   */
  nodeTtl?: number;
  /**
   * Command connections a node opens to a single Redis server, 1 to 64 (else
   * `start` fails); commands of one lock key always share one. More than one
   * lets Redis run one connection's commands while the node reads another's
   * replies (see `CommandPool`). Not used on a cluster, where the node has one
   * connection per primary. Default 2.
   */
  connections?: number;
  /** ms a Redis command may take before the call fails with `store_unavailable`. Default 2000. */
  commandTimeout?: number;
  /**
   * ms a node holds a step's events while the key's earlier step, which may
   * still be on its way on another connection, has not reached it; then it
   * delivers them and its watches read the key again. A read behind on a
   * key waits at most twice this. Default 500.
   */
  gapWait?: number;
  /** Clock of hold, acquire and wait timeouts (node liveness runs on real time). Default the system clock. */
  clock?: Clock;
  limits?: Partial<StoreLimits>;
  logger?: Logger;
  /**
   * Called after every Lua script call with the script's name, its duration
   * in seconds and whether it succeeded; e.g. `LockMetrics#observeScript`.
   */
  observeScript?: (name: string, seconds: number, ok: boolean) => void;
}

/** The default node TTL in ms. */
export const DEFAULT_NODE_TTL = 5000;

/** The default gap wait in ms (see `RedisStoreOptions.gapWait`). */
export const DEFAULT_GAP_WAIT = 500;

/** The link with every script call reported to `observe` (the link itself without one). */
export function timeScripts(link: RedisLink, observe: RedisStoreOptions['observeScript']): RedisLink {
  if (!observe) return link;
  return {
    ...link,
    async evalScript(script, keys, args) {
      const started = performance.now();
      let ok = false;
      try {
        const reply = await link.evalScript(script, keys, args);
        ok = true;
        return reply;
      } finally {
        observe(script.name, (performance.now() - started) / 1000, ok);
      }
    },
  };
}
