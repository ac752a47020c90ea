import { createClient, createCluster } from 'redis';
import type { Script } from './scripts.js';

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
  /** EVALSHA, loading the script with EVAL when the server does not know it (NOSCRIPT). */
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
  /** ms after which a command that got no reply fails. */
  commandTimeout: number;
  /** ms between reconnect attempts. */
  reconnectDelay: number;
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

async function evalWith(
  run: (args: string[]) => Promise<unknown>,
  script: Script,
  keys: string[],
  args: string[],
): Promise<unknown> {
  const tail = [String(keys.length), ...keys, ...args];
  try {
    return await run(['EVALSHA', script.sha, ...tail]);
  } catch (error) {
    if (!isNoScript(error)) throw error;
    return run(['EVAL', script.source, ...tail]);
  }
}

/** Connects to Redis; rejects when the first connection cannot be made. */
export async function connectRedis(options: RedisLinkOptions): Promise<RedisLink> {
  return options.cluster ? connectCluster(options) : connectSingle(options);
}

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
  const base = {
    url: options.url,
    disableOfflineQueue: true,
    disableClientInfo: true,
    maintNotifications: 'disabled' as const,
    commandOptions: { timeout: options.commandTimeout },
    socket: socketOptions(options),
  };
  const client = createClient(base);
  const subscriber = createClient(base);
  let subscriberReadyOnce = false;
  client.on('error', () => emit('trouble'));
  client.on('reconnecting', () => emit('trouble'));
  subscriber.on('error', () => emit('trouble'));
  subscriber.on('reconnecting', () => emit('trouble'));
  subscriber.on('ready', () => {
    if (subscriberReadyOnce) emit('resubscribed');
    subscriberReadyOnce = true;
  });
  await firstConnect(client, options);
  try {
    await firstConnect(subscriber, options);
  } catch (error) {
    client.destroy();
    throw error;
  }
  const run = (args: string[]) => client.sendCommand(args);
  const address = (() => {
    const url = new URL(options.url);
    return `${url.hostname}:${url.port || '6379'}`;
  })();
  return {
    mode: 'single',
    command: (_key, args) => run(args),
    evalScript: (script, keys, args) => evalWith(run, script, keys, args),
    shards: async () => [{ address, command: run }],
    subscribe: (channel, onMessage) => subscriber.subscribe(channel, (message, from) => onMessage(message, from)),
    unsubscribe: (channel) => subscriber.unsubscribe(channel),
    on: (event, fn) => handlers[event].add(fn),
    async close() {
      client.destroy();
      subscriber.destroy();
    },
  };
}

/** `connect()` of node-redis retries forever; give up after a bounded time so a wrong URL fails loudly. */
async function firstConnect(client: { connect(): Promise<unknown>; destroy(): void }, options: RedisLinkOptions) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = Math.max(2000, options.commandTimeout * 2);
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`could not connect to Redis within ${limit} ms`)), limit);
      }),
    ]);
  } catch (error) {
    client.destroy();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

async function connectCluster(options: RedisLinkOptions): Promise<RedisLink> {
  const handlers = { trouble: new Set<() => void>(), resubscribed: new Set<() => void>() };
  const emit = (event: keyof typeof handlers) => {
    for (const fn of handlers[event]) fn();
  };
  const rootNodes = options.url.split(',').map((url) => ({ url: url.trim() }));
  const cluster = createCluster({
    rootNodes,
    defaults: {
      disableOfflineQueue: true,
      disableClientInfo: true,
      maintNotifications: 'disabled',
      socket: socketOptions(options),
    },
    commandOptions: { timeout: options.commandTimeout },
  });
  cluster.on('error', () => emit('trouble'));
  cluster.on('node-error', () => emit('trouble'));
  cluster.on('node-reconnecting', () => emit('trouble'));
  cluster.on('__resubscribeListeners', () => emit('resubscribed'));
  await firstConnect(cluster, options);
  const run = (key: string | undefined, args: string[]) => cluster.sendCommand(key, false, args);
  return {
    mode: 'cluster',
    command: run,
    evalScript: (script, keys, args) => evalWith((a) => run(keys[0], a), script, keys, args),
    async shards() {
      return Promise.all(
        cluster.masters.map(async (master) => {
          const client = await cluster.nodeClient(master);
          return { address: `${master.host}:${master.port}`, command: (args: string[]) => client.sendCommand(args) };
        }),
      );
    },
    subscribe: (channel, onMessage) => cluster.subscribe(channel, (message, from) => onMessage(message, from)),
    unsubscribe: (channel) => cluster.unsubscribe(channel),
    on: (event, fn) => handlers[event].add(fn),
    async close() {
      cluster.destroy();
    },
  };
}
