import {
  createLockServer,
  createManualClock,
  type LockServer,
  type LockServerOptions,
  type LockStore,
  type ManualClock,
} from '@lockwire/server';
import {
  createWsTransport,
  LockClient,
  type ClientEvents,
  type ConnectOptions,
  type Lock,
  type TransportFactory,
} from '@lockwire/client';
import type { TcpProxy } from '../../test/helpers/tcp-proxy.js';

/** A server on port 0 with a manual clock, and the clients connected to it. */
export interface Harness {
  server: LockServer;
  clock: ManualClock;
  connect(options?: ConnectOptions): Promise<LockClient>;
  /** Connects to `url` (e.g. through a proxy in front of the server); closed with the harness. */
  connectTo(url: string, options?: ConnectOptions): Promise<LockClient>;
  close(): Promise<void>;
}

/** Starts a server on a free port with a manual clock and no heartbeat, and any further `options` (e.g. `limits`). */
export async function startHarness(options: Omit<LockServerOptions, 'port' | 'clock'> = {}): Promise<Harness> {
  const clock = createManualClock();
  const server = await createLockServer({ heartbeatInterval: 0, ...options, port: 0, clock });
  const clients: LockClient[] = [];
  const connectTo = async (url: string, options?: ConnectOptions): Promise<LockClient> => {
    const client = await LockClient.connect(url, options);
    clients.push(client);
    return client;
  };
  return {
    server,
    clock,
    connect: (options) => connectTo(server.url, options),
    connectTo,
    async close() {
      await Promise.all(clients.map((client) => client.close()));
      await server.close();
    },
  };
}

/** Reconnect settings that retry within milliseconds, for tests that drop connections. */
export const fastReconnect = { initialDelay: 1, maxDelay: 5, jitter: 0 };

/** The session grace fields of a fake server's welcome: a fresh session with `secret`, overridden by `extra`. */
export function graceWelcome(secret: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { resume: secret, grace: 30_000, resumed: false, held: [], ...extra };
}

/** Rejects if `promise` has not settled within `ms` (real time): a bounded wait, not a sleep. */
export function within<T>(promise: Promise<T>, ms = 2000, what = 'the expected message'): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the signal's reason once it aborts (bounded). */
export function abortedWith(signal: AbortSignal, ms = 2000): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return within(
    new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true })),
    ms,
    'the signal to abort',
  );
}

/** Resolves with the next `type` event of `client` (bounded). */
export function nextEvent<K extends keyof ClientEvents>(
  client: LockClient,
  type: K,
  ms = 2000,
): Promise<ClientEvents[K]> {
  return within(
    new Promise((resolve) => {
      const off = client.on(type, (payload) => {
        off();
        resolve(payload);
      });
    }),
    ms,
    `the client's ${String(type)} event`,
  );
}

/**
 * Starts a Web Locks request on `client` that holds `name` until `release`
 * resolves; resolves (bounded) once granted, with the granted lock and the
 * request's outcome (`done`: its value, or the error it rejected with).
 */
export async function holding(
  client: LockClient,
  name: string,
  release: Promise<unknown>,
): Promise<{ lock: Lock | null; done: Promise<unknown> }> {
  let granted!: (lock: Lock | null) => void;
  const lock = new Promise<Lock | null>((resolve) => (granted = resolve));
  const done = client.locks.request(name, (l) => {
    granted(l);
    return release;
  });
  return { lock: await within(lock), done: done.catch((error: unknown) => error) };
}

/** A ws transport that records every frame sent and lets a test see frames before the client does. */
export function recordingTransport(onFrame?: (frame: Record<string, unknown>) => void): {
  transport: TransportFactory;
  sent: Record<string, unknown>[];
} {
  const inner = createWsTransport();
  const sent: Record<string, unknown>[] = [];
  const transport: TransportFactory = (url, handlers) => {
    const socket = inner(url, {
      ...handlers,
      message(text) {
        if (text !== null) onFrame?.(JSON.parse(text) as Record<string, unknown>);
        handlers.message(text);
      },
    });
    return {
      send(text) {
        sent.push(JSON.parse(text) as Record<string, unknown>);
        socket.send(text);
      },
      close: (code, reason) => socket.close(code, reason),
    };
  };
  return { transport, sent };
}

/**
 * A ws transport whose `released()` resolves (bounded) at the next reply that
 * accepted a `release`, once the client has handled it.
 */
export function releaseWatchingTransport(): { transport: TransportFactory; released: () => Promise<void> } {
  const waiting: (() => void)[] = [];
  const { transport } = recordingTransport((frame) => {
    // Resolved before the client reads the frame; the awaiting code runs after it did.
    if (frame.type === 'reply' && frame.released === true) for (const resolve of waiting.splice(0)) resolve();
  });
  const released = () =>
    within(new Promise<void>((resolve) => waiting.push(resolve)), 2000, 'a release the server accepted');
  return { transport, released };
}

/** A store around another whose next acquire's answer can be held back. */
export interface GatedStore {
  store: LockStore;
  /** Holds back the next acquire's answer until `open()`; `ran` resolves once the store ran it. */
  holdNextAcquire(): { ran: Promise<void>; open: () => void };
}

/** The acquire runs at once (the server has decided the grant); only its answer, and so the reply, waits. */
export function gatedStore(inner: LockStore): GatedStore {
  let gate: { ran: () => void; opened: Promise<void> } | null = null;
  const store = new Proxy(inner, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]): unknown => {
        const result: unknown = Reflect.apply(value, target, args);
        if (property !== 'acquire' || gate === null || !(result instanceof Promise)) return result;
        const held = gate;
        gate = null;
        return (async () => {
          const answer: unknown = await result;
          held.ran();
          await held.opened;
          return answer;
        })();
      };
    },
  });
  const holdNextAcquire = () => {
    let ran: () => void = () => undefined;
    let open: () => void = () => undefined;
    const didRun = new Promise<void>((resolve) => (ran = resolve));
    gate = { ran, opened: new Promise<void>((resolve) => (open = resolve)) };
    return { ran: within(didRun, 2000, 'the store to run the acquire'), open };
  };
  return { store, holdNextAcquire };
}

/**
 * Cuts `client` off by having `proxy`, the one it connects through, refuse
 * it; resolves once the client noticed the drop (it keeps trying to
 * reconnect, refused until {@link reconnectThrough}).
 */
export async function dropThrough(proxy: TcpProxy | undefined, client: LockClient): Promise<void> {
  const down = nextEvent(client, 'disconnect');
  proxy?.refuse();
  const event = await down;
  if (!event.reconnecting) throw new Error('the client does not reconnect after the drop');
}

/** Lets `client` reconnect through `proxy` again; resolves with its `reconnect` event. */
export async function reconnectThrough(proxy: TcpProxy | undefined, client: LockClient): Promise<ClientEvents['reconnect']> {
  const reconnected = nextEvent(client, 'reconnect');
  proxy?.unblock();
  return reconnected;
}
