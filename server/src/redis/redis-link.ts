import { createClient, createCluster, ErrorReply } from 'redis';
import { ClusterConnections } from './cluster-connections.js';
import { ClusterSubscriber } from './cluster-subscriber.js';
import { COMMAND_QUEUE_LIMIT, createDeadlines } from './command-deadlines.js';
import { CommandPool, DEFAULT_REDIS_CONNECTIONS, MAX_REDIS_CONNECTIONS } from './command-pool.js';
import { firstConnect } from './first-connect.js';
import { redisTlsProblem, tlsSocketOptions, type RedisTlsOptions } from './redis-tls.js';
import { scriptLibrary, type Script, type ScriptLibrary } from './scripts.js';

/** One Redis server (a single instance, or one primary of a cluster). */
export interface RedisShard {
  /** `host:port`. */
  readonly address: string;
  command(args: string[]): Promise<unknown>;
}

/**
 * The few things the Redis store needs from a connection, the same over a
 * single `redis-server` and a Redis Cluster: commands routed by key, scripts,
 * every primary (for SCAN and INFO), and pub/sub on one dedicated connection.
 */
export interface RedisLink {
  readonly mode: 'single' | 'cluster';
  /** Runs a command on the shard owning `key` (any shard when undefined). */
  command(key: string | undefined, args: string[]): Promise<unknown>;
  /**
   * Single server only (undefined on a cluster): runs a command on the
   * connection that carries `key`'s commands, whatever keys the command
   * itself names (see `CommandPool`). Redis then runs it before every
   * command of `key` sent after it, and a broken connection fails them
   * alike. On a cluster a command must go to the shard of its own keys.
   */
  readonly commandBefore?: (key: string, args: string[]) => Promise<unknown>;
  /** Single server only: which command connection (from 0) carries `key`'s commands; keys of one lane keep their order. */
  readonly laneOf?: (key: string) => number;
  /** Runs a script: FCALL of the store's function library, or EVALSHA on a Redis without functions (see `ScriptRunner`). */
  evalScript(script: Script, keys: string[], args: string[]): Promise<unknown>;
  /** The current primaries. */
  shards(): Promise<RedisShard[]>;
  subscribe(channel: string, onMessage: (message: string, channel: string) => void): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  /**
   * Calls `fn` when a connection broke or errored (`trouble`) and when the
   * pub/sub connection is back after a reconnect (`resubscribed`: messages
   * may have been missed in between).
   */
  on(event: 'trouble' | 'resubscribed', fn: () => void): void;
  close(): Promise<void>;
}

export interface RedisLinkOptions {
  /** `redis://host:port` of a single server, or of one or more cluster nodes (comma-separated) with `cluster`. */
  url: string;
  cluster: boolean;
  /** CA, client certificate and key of a `rediss://` URL; refused with `redis://`. Default: the system CAs, no client certificate. */
  tls?: RedisTlsOptions;
  /**
   * Command connections to a single server (see `CommandPool`), at least 1.
   * Default `DEFAULT_REDIS_CONNECTIONS`. A cluster has one per primary.
   */
  connections?: number;
  /** ms within which a single server's command connection that carried nothing sends a PING (see `CommandPoolOptions`). Default: never. */
  keepAlive?: number;
  /** ms after which a command that got no reply fails. */
  commandTimeout: number;
  /** ms between reconnect attempts. */
  reconnectDelay: number;
  /**
   * ms after which the pub/sub connection, having received nothing, is
   * taken for dead (a half-open path) and reconnected (on a cluster, while
   * subscribed: see `ClusterSubscriber`); the store publishes a heartbeat to
   * itself more often than this. Default: never.
   */
  subscriberIdleTimeout?: number;
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** Redis without functions (before 7.0), or a user not allowed to load them. */
const NO_FUNCTIONS = /unknown command|NOPERM/i;

/**
 * Runs scripts as functions of the store's library (FCALL) where Redis has
 * them, else as EVALSHA scripts (loaded with EVAL on NOSCRIPT). A server that
 * lost the library (restarted) gets it again on `Function not found`.
 */
class ScriptRunner {
  /** null until known; false on a Redis without functions. */
  #functions: boolean | null = null;

  /** Loads the library through `run` (one server); turns functions off where Redis has none. */
  async load(run: (args: string[]) => Promise<unknown>, library: ScriptLibrary): Promise<void> {
    if (this.#functions === false) return;
    try {
      await run(['FUNCTION', 'LOAD', 'REPLACE', library.source]);
      this.#functions = true;
    } catch (error) {
      if (!NO_FUNCTIONS.test(messageOf(error))) throw error;
      this.#functions = false;
    }
  }

  call(run: (args: string[]) => Promise<unknown>, script: Script, keys: string[], args: string[]): Promise<unknown> {
    if (this.#functions === false) return this.#evalsha(run, script, keys, args);
    // The command is built as one array (no intermediate copy): it is made on every step, and the
    // common case returns the call's own promise (no async function around it).
    const fcall = ['FCALL', script.fn, String(keys.length)];
    for (const key of keys) fcall.push(key);
    for (const arg of args) fcall.push(arg);
    return run(fcall).catch(async (error: unknown) => {
      const message = messageOf(error);
      if (/Function not found/i.test(message)) {
        await this.load(run, script.library);
        if (this.#functions) return run([...fcall]);
      } else if (NO_FUNCTIONS.test(message)) {
        this.#functions = false;
      } else {
        throw error;
      }
      return this.#evalsha(run, script, keys, args);
    });
  }

  async #evalsha(run: (args: string[]) => Promise<unknown>, script: Script, keys: string[], args: string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await run(['EVALSHA', script.sha, ...tail]);
    } catch (error) {
      if (!messageOf(error).startsWith('NOSCRIPT')) throw error;
      return run(['EVAL', script.source, ...tail]);
    }
  }
}

/**
 * Connects to Redis; rejects when the first connection cannot be made within
 * twice the command timeout (at least 2 s), with the last error seen, and at
 * once when TLS refuses it (see `tlsRefusal`) or `tls` is given without a
 * `rediss://` URL.
 */
export async function connectRedis(options: RedisLinkOptions): Promise<RedisLink> {
  const problem = redisTlsProblem(options.url, options.tls);
  if (problem !== undefined) throw new Error(`cannot connect to Redis: ${problem}`);
  const { connections = DEFAULT_REDIS_CONNECTIONS } = options;
  if (!Number.isInteger(connections) || connections < 1 || connections > MAX_REDIS_CONNECTIONS) {
    throw new Error(`cannot connect to Redis: connections must be an integer from 1 to ${MAX_REDIS_CONNECTIONS}, not ${connections}`);
  }
  return options.cluster ? connectCluster(options) : connectSingle(options);
}

/** How long a first connection may take: twice the command timeout, at least 2 s. */
const firstConnectLimit = (options: RedisLinkOptions) => Math.max(2000, options.commandTimeout * 2);

function socketOptions(options: RedisLinkOptions) {
  return {
    connectTimeout: Math.max(1000, options.commandTimeout),
    reconnectStrategy: () => options.reconnectDelay,
  };
}

async function connectSingle(options: RedisLinkOptions): Promise<RedisLink> {
  const handlers = { trouble: new Set<() => void>(), resubscribed: new Set<() => void>() };
  const emit = (event: keyof typeof handlers) => {
    for (const fn of handlers[event]) fn();
  };
  const tls = new URL(options.url).protocol === 'rediss:';
  const base = {
    url: options.url,
    disableOfflineQueue: true,
    disableClientInfo: true,
    maintNotifications: 'disabled' as const,
    commandsQueueMaxLength: COMMAND_QUEUE_LIMIT,
    socket: tls ? { ...socketOptions(options), ...tlsSocketOptions(options.tls) } : socketOptions(options),
  };
  const makeClient = () => {
    const made = createClient(base);
    made.on('error', () => emit('trouble'));
    made.on('reconnecting', () => emit('trouble'));
    return made;
  };
  // The first command connection, then the others of the pool (see `CommandPool`).
  const first = makeClient();
  const more = Array.from({ length: (options.connections ?? DEFAULT_REDIS_CONNECTIONS) - 1 }, makeClient);
  const clients = [first, ...more];
  const idle = options.subscriberIdleTimeout;
  const subscriber = createClient(idle === undefined ? base : { ...base, socket: { ...base.socket, socketTimeout: idle } });
  let subscriberReadyOnce = false;
  subscriber.on('error', () => emit('trouble'));
  subscriber.on('reconnecting', () => emit('trouble'));
  subscriber.on('ready', () => {
    if (subscriberReadyOnce) emit('resubscribed');
    subscriberReadyOnce = true;
  });
  // A PING proves the connection: over TLS 1.3 Redis refuses a missing client certificate only after the handshake.
  // Any reply does (a Redis still loading its data answers with an error).
  const limit = firstConnectLimit(options);
  const ping = (of: typeof subscriber) => async () => {
    try {
      await of.sendCommand(['PING']);
    } catch (error) {
      if (!(error instanceof ErrorReply)) throw error;
    }
  };
  const destroyAll = () => {
    for (const of of [...clients, subscriber]) {
      try {
        of.destroy();
      } catch {
        // Closed already (firstConnect destroys the one it gave up).
      }
    }
  };
  // The first connection alone first: a wrong URL or refused TLS fails on it, at once where it can.
  try {
    await firstConnect(first, { events: ['error'], limit, tls, check: ping(first) });
    const rest = await Promise.allSettled([subscriber, ...more].map((of) => firstConnect(of, { events: ['error'], limit, tls, check: ping(of) })));
    const failed = rest.find((outcome) => outcome.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (error) {
    destroyAll();
    throw error;
  }
  const deadlines = createDeadlines(options.commandTimeout);
  // A hung connection is a broken one to the node's liveness, which checks Redis as after any break.
  const pool = new CommandPool({
    clients,
    make: makeClient,
    deadlines,
    onHung: () => emit('trouble'),
    ...(options.keepAlive === undefined ? {} : { keepAlive: options.keepAlive }),
  });
  const run = (args: string[]) => pool.run(undefined, args);
  const runner = new ScriptRunner();
  try {
    await runner.load(run, scriptLibrary);
  } catch {
    // Loaded on first use instead.
  }
  const address = (() => {
    const url = new URL(options.url);
    return `${url.hostname}:${url.port || '6379'}`;
  })();
  return {
    mode: 'single',
    command: (key, args) => pool.run(key, args),
    commandBefore: (key, args) => pool.run(key, args),
    laneOf: (key) => pool.laneOf(key),
    evalScript: (script, keys, args) => runner.call((a) => pool.run(keys[0], a), script, keys, args),
    shards: async () => [{ address, command: run }],
    subscribe: (channel, onMessage) => deadlines.guard(subscriber.subscribe(channel, (message, from) => onMessage(message, from))),
    unsubscribe: (channel) => deadlines.guard(subscriber.unsubscribe(channel)),
    on: (event, fn) => handlers[event].add(fn),
    async close() {
      deadlines.stop();
      pool.close();
      subscriber.destroy();
    },
  };
}

/** The root nodes of a cluster `url` list, and what every node's client shares (see `clusterUrlProblem`). */
interface ClusterUrls {
  readonly nodes: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  readonly tls: boolean;
  readonly username: string | undefined;
  readonly password: string | undefined;
}

function readClusterUrls(list: string): ClusterUrls | string {
  const urls: URL[] = [];
  for (const entry of list.split(',').map((text) => text.trim()).filter((text) => text !== '')) {
    try {
      urls.push(new URL(entry));
    } catch {
      return 'a node URL is not a URL';
    }
  }
  const first = urls[0];
  if (first === undefined) return 'no node URL given';
  if (urls.some((url) => url.protocol !== first.protocol)) return 'the node URLs must be all redis:// or all rediss://';
  if (urls.some((url) => !/^\/?0?$/.test(url.pathname))) return 'a Redis Cluster has database 0 only: give no /database in the node URLs';
  // A node listed without credentials takes those of the others: they are one cluster's.
  const credentialed = urls.filter((url) => url.username !== '' || url.password !== '');
  const credentials = credentialed[0];
  if (credentialed.some((url) => url.username !== credentials?.username || url.password !== credentials.password)) {
    return 'the node URLs that give credentials must give the same user and password';
  }
  const decoded = (text: string | undefined) => (text ? decodeURIComponent(text) : undefined);
  return {
    nodes: urls.map((url) => ({
      host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port === '' ? 6379 : Number(url.port),
    })),
    tls: first.protocol === 'rediss:',
    username: decoded(credentials?.username),
    password: decoded(credentials?.password),
  };
}

/**
 * Why a comma-separated list of cluster node URLs cannot be used, or
 * undefined when it can: the nodes must share one scheme (`redis://` or
 * `rediss://`) and, where they give them, one user and password, and name
 * no database but 0. Assumes each entry is a `redis://` or `rediss://` URL.
 */
export function clusterUrlProblem(list: string): string | undefined {
  const read = readClusterUrls(list);
  return typeof read === 'string' ? read : undefined;
}

async function connectCluster(options: RedisLinkOptions): Promise<RedisLink> {
  const handlers = { trouble: new Set<() => void>(), resubscribed: new Set<() => void>() };
  const emit = (event: keyof typeof handlers) => {
    for (const fn of handlers[event]) fn();
  };
  const urls = readClusterUrls(options.url);
  if (typeof urls === 'string') throw new Error(`cannot connect to the Redis Cluster: ${urls}`);
  // node-redis makes the client of every node it discovers (the root nodes
  // included) from `defaults` and the node's address alone: credentials and
  // TLS reach the nodes only through `defaults`, never through a root URL.
  const cluster = createCluster({
    rootNodes: urls.nodes.map((node) => ({ socket: node })),
    defaults: {
      disableOfflineQueue: true,
      disableClientInfo: true,
      maintNotifications: 'disabled',
      // The only bound on a node's queue while its primary hangs with the connection open (see docs/scaling.md).
      commandsQueueMaxLength: COMMAND_QUEUE_LIMIT,
      ...(urls.username === undefined ? {} : { username: urls.username }),
      ...(urls.password === undefined ? {} : { password: urls.password }),
      socket: urls.tls ? { ...socketOptions(options), ...tlsSocketOptions(options.tls) } : socketOptions(options),
    },
  });
  cluster.on('error', () => emit('trouble'));
  cluster.on('node-error', () => emit('trouble'));
  cluster.on('node-reconnecting', () => emit('trouble'));
  cluster.on('__resubscribeListeners', () => emit('resubscribed'));
  // A root node's connection error comes as 'error', a discovered node's as 'node-error'.
  // Discovery reads CLUSTER SLOTS from a root node, which proves its connection.
  await firstConnect(cluster, { events: ['error', 'node-error'], limit: firstConnectLimit(options), tls: urls.tls });
  const deadlines = createDeadlines(options.commandTimeout);
  // A hung primary's connection is a broken one to the node's liveness, as on a single server.
  const connections = new ClusterConnections(cluster, deadlines, () => emit('trouble'));
  const subscriber = new ClusterSubscriber(cluster, {
    deadlines,
    idleTimeout: options.subscriberIdleTimeout,
    onTrouble: () => emit('trouble'),
    onResubscribed: () => emit('resubscribed'),
  });
  const run = (key: string | undefined, args: string[]) => connections.run(key, args);
  const runner = new ScriptRunner();
  try {
    for (const master of cluster.masters) {
      const client = await cluster.nodeClient(master);
      await runner.load((args) => deadlines.guard(client.sendCommand(args)), scriptLibrary);
    }
  } catch {
    // Loaded on first use instead.
  }
  return {
    mode: 'cluster',
    command: run,
    evalScript: (script, keys, args) => runner.call((a) => run(keys[0], a), script, keys, args),
    async shards() {
      return cluster.masters.map((master) => ({
        address: `${master.host}:${master.port}`,
        command: (args: string[]) => connections.runOn(master, args),
      }));
    },
    subscribe: (channel, onMessage) => subscriber.subscribe(channel, onMessage),
    unsubscribe: (channel) => subscriber.unsubscribe(channel),
    on: (event, fn) => handlers[event].add(fn),
    async close() {
      deadlines.stop();
      subscriber.close();
      connections.close();
      cluster.destroy();
    },
  };
}
