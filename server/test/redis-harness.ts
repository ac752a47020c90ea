import { connect, createServer, type Socket } from 'node:net';
import { afterEach } from 'vitest';
import { createRedisStore, type RedisStoreOptions } from '../src/redis/redis-store.js';
import type { LockStore, StoreListener } from '../src/store.js';
import { useRedisNodes } from '../../test/helpers/redis-nodes.js';
import type { RedisServer } from '../../test/helpers/redis-server.js';

/** A log of what a store told its listener, one line per call, that a test can await. */
export interface ListenerLog {
  readonly lines: string[];
  readonly listener: StoreListener;
  /** Adds a line of the test's own (e.g. when a reply came). */
  push(line: string): void;
  /** Resolves with the first line matching `pattern`, failing after `timeoutMs`. */
  next(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

export function listenerLog(): ListenerLog {
  const lines: string[] = [];
  const waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>();
  const push = (line: string) => {
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (waiter.pattern.test(line)) {
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  };
  return {
    lines,
    push,
    listener: {
      granted: (s, t, g) => push(`granted ${s} #${t} ${g.token}`),
      acquireTimedOut: (s, t) => push(`timedOut ${s} #${t}`),
      waitDone: (s, t, free) => push(`waitDone ${s} #${t} ${free}`),
      lost: (s, l) => push(`lost ${s} ${l.key} ${l.token} ${l.reason}`),
    },
    next(pattern, timeoutMs = 5000) {
      const found = lines.find((line) => pattern.test(line));
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = {
          pattern,
          resolve: (line: string) => {
            clearTimeout(timer);
            resolve(line);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms:\n${lines.join('\n')}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
  };
}

/**
 * A TCP proxy in front of Redis that can slow down or silence what Redis
 * sends on pub/sub connections (a connection becomes one when it sends a
 * SUBSCRIBE), while commands and their replies flow on time; or slow down
 * the replies to commands, which Redis still runs on time.
 */
export interface PubSubProxy {
  readonly port: number;
  readonly url: string;
  /** ms by which pub/sub bytes from Redis are delayed (order kept); 0 passes them at once. */
  delay(ms: number): void;
  /** ms by which replies to commands are delayed (order kept); 0 passes them at once. */
  delayReplies(ms: number): void;
  /** Stops passing pub/sub bytes from Redis on the connections open now, closing nothing (half-open). */
  silence(): void;
  /** Drops the pub/sub connections open now and refuses every new connection for `ms`. */
  cutSubscribers(ms: number): void;
  close(): void;
}

export async function startPubSubProxy(targetPort: number): Promise<PubSubProxy> {
  const sockets = new Set<Socket>();
  const subscribers = new Set<{ silent: boolean }>();
  let lag = 0;
  let replyLag = 0;
  const subscriberSockets = new Set<Socket>();
  let refusingUntil = 0;
  const server = createServer((client) => {
    if (Date.now() < refusingUntil) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    const state = { subscriber: false, silent: false, last: 0 };
    client.on('data', (chunk) => {
      if (!state.subscriber && /subscribe/i.test(chunk.toString('latin1'))) {
        state.subscriber = true;
        subscribers.add(state);
        subscriberSockets.add(client);
      }
      upstream.write(chunk);
    });
    // Delayed bytes wait in one queue per connection, drained by one timer: timers of different
    // lengths due at the same ms may fire in either order, which would reorder the replies.
    const out: Array<{ at: number; chunk: Buffer }> = [];
    let draining = false;
    const drain = () => {
      let next = out[0];
      while (next && next.at <= Date.now()) {
        client.write(next.chunk);
        out.shift();
        next = out[0];
      }
      draining = next !== undefined;
      if (next) setTimeout(drain, next.at - Date.now());
    };
    upstream.on('data', (chunk: Buffer) => {
      if (state.silent) return;
      const at = Math.max(Date.now() + (state.subscriber ? lag : replyLag), state.last);
      state.last = at;
      if (!draining && at <= Date.now()) {
        client.write(chunk);
        return;
      }
      out.push({ at, chunk });
      if (!draining) {
        draining = true;
        setTimeout(drain, at - Date.now());
      }
    });
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => {
        b.destroy();
        sockets.delete(a);
        subscribers.delete(state);
        subscriberSockets.delete(client);
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    delay: (ms) => {
      lag = ms;
    },
    delayReplies: (ms) => {
      replyLag = ms;
    },
    silence: () => {
      for (const state of subscribers) state.silent = true;
    },
    cutSubscribers: (ms) => {
      refusingUntil = Date.now() + ms;
      for (const socket of subscriberSockets) socket.destroy();
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** Options of a store started through {@link RedisStores}. */
export type HarnessStoreOptions = RedisStoreOptions & {
  /**
   * The store's `close()` may fail after the test without failing it (e.g. a
   * node whose pub/sub path a proxy silenced). Default false: a failed close
   * fails the test.
   */
  readonly tolerateCloseFailure?: boolean;
};

/** Options of nodes started together: a store's, with the namespace fresh unless given. */
export type NodeOptions = Omit<HarnessStoreOptions, 'url' | 'namespace'> & { readonly namespace?: string };

/** Anything that listens to a store through its `listener`, as {@link ListenerLog} does. */
export interface Listening {
  readonly listener: StoreListener;
}

/** A started store (one node) and what its listener heard. */
export interface RedisNode<L extends Listening = ListenerLog> {
  readonly store: LockStore;
  readonly log: L;
  readonly namespace: string;
}

/** Redis stores on one redis-server, each test's stores and proxies closed after it. */
export interface RedisStores {
  /** The redis-server, started before the block's first test and stopped after its last. */
  readonly redis: RedisServer;
  /** A namespace no earlier call of this fixture returned: the label, the process id and a counter. */
  namespace(): string;
  /** Starts a {@link PubSubProxy} in front of the redis-server; closed after the test, once its stores are. */
  proxy(): Promise<PubSubProxy>;
  /** Creates a store with `options` and starts it with `listener`; closed after the test. */
  startStore(options: HarnessStoreOptions, listener: StoreListener): Promise<LockStore>;
  /**
   * Starts one node per URL (Redis' own or a proxy's), one after the other,
   * sharing `options.namespace` or else one fresh namespace; each listens
   * with a new {@link ListenerLog}, or what `listen` makes.
   */
  startNodes(urls: readonly string[], options: NodeOptions): Promise<RedisNode[]>;
  startNodes<L extends Listening>(urls: readonly string[], options: NodeOptions, listen: () => L): Promise<Array<RedisNode<L>>>;
  /**
   * Two nodes on one fresh namespace: `proxied` reaches Redis through a new
   * proxy (passing everything on time until told otherwise), `direct` on
   * Redis' own URL.
   */
  twoNodes(options: NodeOptions): Promise<{ proxy: PubSubProxy; proxied: RedisNode; direct: RedisNode }>;
}

/**
 * Registers, in the calling `describe` block (or file), the hooks that start
 * a redis-server for it and stop it after its last test, and, after each
 * test, close the stores started through the returned {@link RedisStores}
 * (all at once), then its proxies. A store that fails to close fails the
 * test unless it was started with `tolerateCloseFailure`. `label` starts
 * each namespace, so a leftover key names the file that wrote it.
 *
 * Vitest runs after-hooks in the reverse order of registration: an
 * `afterEach` the block registers after this call runs before these closes.
 */
export function useRedisStores(label: string): RedisStores {
  // The redis-server's hooks are useRedisNodes': no server node is started
  // through it, so its own after-test closes find nothing.
  const nodes = useRedisNodes(label);
  const stores: Array<{ store: LockStore; tolerateCloseFailure: boolean }> = [];
  const proxies: PubSubProxy[] = [];
  let run = 0;

  afterEach(async () => {
    const closed = await Promise.allSettled(
      stores.splice(0).map(({ store, tolerateCloseFailure }) => (tolerateCloseFailure ? store.close().catch(() => {}) : store.close())),
    );
    for (const proxy of proxies.splice(0)) proxy.close();
    for (const outcome of closed) if (outcome.status === 'rejected') throw outcome.reason;
  });

  const namespace = () => `${label}${process.pid}x${++run}`;
  const proxy = async () => {
    const made = await startPubSubProxy(nodes.redis.port);
    proxies.push(made);
    return made;
  };
  const startStore = async ({ tolerateCloseFailure = false, ...options }: HarnessStoreOptions, listener: StoreListener) => {
    const store = createRedisStore(options);
    // Tracked before it starts: a start that fails part way still has its connections closed.
    stores.push({ store, tolerateCloseFailure });
    await store.start(listener);
    return store;
  };
  function startNodes(urls: readonly string[], options: NodeOptions): Promise<RedisNode[]>;
  function startNodes<L extends Listening>(urls: readonly string[], options: NodeOptions, listen: () => L): Promise<Array<RedisNode<L>>>;
  async function startNodes(urls: readonly string[], options: NodeOptions, listen: () => Listening = listenerLog): Promise<Array<RedisNode<Listening>>> {
    const ns = options.namespace ?? namespace();
    const made: Array<RedisNode<Listening>> = [];
    for (const url of urls) {
      const log = listen();
      made.push({ store: await startStore({ ...options, url, namespace: ns }, log.listener), log, namespace: ns });
    }
    return made;
  }
  return {
    get redis() {
      return nodes.redis;
    },
    namespace,
    proxy,
    startStore,
    startNodes,
    async twoNodes(options) {
      const through = await proxy();
      const [proxied, direct] = await startNodes([through.url, nodes.redis.url], options);
      if (!proxied || !direct) throw new Error('two nodes were not started');
      return { proxy: through, proxied, direct };
    },
  };
}
