import { DEFAULT_LIMITS, type ListResult, type LockStatus } from '@lockwire/protocol';
import { connect as netConnect } from 'node:net';
import WebSocket from 'ws';
import type { Logger } from '../src/logger.js';
import { createLockServer, type LockServer } from '../src/server.js';
import type {
  AcquireInput,
  AcquireOutcome,
  LockEvent,
  LockStore,
  SessionId,
  StoreLimits,
  StoreListener,
  Ticket,
  WaitInput,
  WatchHandle,
} from '../src/store.js';

/** A JSON message as the server sent it. */
export type Frame = Record<string, unknown> & { type?: unknown; id?: unknown };

const WAIT_MS = 3000;

/** Resolves `promise`, or rejects after `ms` naming what was awaited. */
export function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The head (status line and headers) the server answers a WebSocket upgrade
 * of `path` with, read until it closes the socket; `key` is the request's
 * Sec-WebSocket-Key (a valid one by default).
 */
export function upgradeHead(port: number, path = '/v1', key = 'dGhlIHNhbXBsZSBub25jZQ=='): Promise<string> {
  return within(
    new Promise((resolve, reject) => {
      const socket = netConnect(port, '127.0.0.1', () => {
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      let text = '';
      socket.on('data', (chunk) => {
        text += String(chunk);
      });
      socket.on('close', () => resolve(text.split('\r\n\r\n')[0] ?? ''));
      socket.on('error', reject);
    }),
    `the upgrade answer on ${path}`,
  );
}

/** The status line the server answers a WebSocket upgrade of `path` with (`/v1` by default). */
export async function upgradeStatusLine(port: number, path = '/v1', key?: string): Promise<string> {
  return (await upgradeHead(port, path, key)).split('\r\n')[0] ?? '';
}

/**
 * A raw ws client that keeps every frame it receives in order, so a test can
 * await the next message, or the first unconsumed one matching a predicate.
 */
export class RawClient {
  readonly inbox: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.inbox.push(JSON.parse(String(data)) as Frame);
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    ws.on('error', () => {});
  }

  /** Connects and waits for the `welcome`, which is consumed and returned. */
  static async connect(url: string, options: WebSocket.ClientOptions = {}): Promise<{ client: RawClient; welcome: Frame }> {
    const ws = new WebSocket(url, options);
    const client = new RawClient(ws);
    await within(new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }), 'the connection to open');
    const welcome = await client.next();
    return { client, welcome };
  }

  send(message: object): void {
    this.ws.send(JSON.stringify(message));
  }

  /** The first unconsumed message matching `match` (default: any), removed from the inbox; waits at most `ms`. */
  async next(match: (frame: Frame) => boolean = () => true, what = 'a message', ms = WAIT_MS): Promise<Frame> {
    const take = () => {
      const index = this.inbox.findIndex(match);
      return index === -1 ? undefined : this.inbox.splice(index, 1)[0];
    };
    return within(
      (async () => {
        for (;;) {
          const found = take();
          if (found) return found;
          await new Promise<void>((resolve) => this.waiters.push(resolve));
        }
      })(),
      what,
      ms,
    );
  }

  /** The reply to request `id`. */
  reply(id: unknown): Promise<Frame> {
    return this.next((f) => f.type === 'reply' && f.id === id, `the reply to ${JSON.stringify(id)}`);
  }

  /**
   * Sends a request and awaits its reply. Generic so a request literal keeps
   * its own fields (`op`, `key`, ...) instead of meeting an excess-property check.
   */
  async request<M extends { readonly id: unknown }>(message: M): Promise<Frame> {
    this.send(message);
    return this.reply(message.id);
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close();
    return within(this.closed, 'the socket to close');
  }
}

/**
 * A server logger that follows connections by the server's own log lines.
 * The server writes `connection closed` once the session has left
 * `sessionCount()`, so these waits replace polling that count: `closed(n)`
 * resolves once `n` connections in all were logged closed, `idle()` once
 * every connection logged open was logged closed. Both reject after `ms`.
 */
export function sessionLog() {
  let opened = 0;
  let closed = 0;
  let wake: () => void = () => undefined;
  const note = (_obj: object, msg: string) => {
    if (msg === 'connection opened') opened++;
    else if (msg === 'connection closed') closed++;
    else return;
    wake();
  };
  const logger: Logger = { debug: note, info: note, warn: note, error: note };
  const until = (done: () => boolean, what: string, ms?: number) =>
    within(
      (async () => {
        while (!done()) await new Promise<void>((resolve) => (wake = resolve));
      })(),
      what,
      ms,
    );
  return {
    logger,
    closed: (count: number, what: string, ms?: number) => until(() => closed >= count, what, ms),
    idle: (what: string, ms?: number) => until(() => closed >= opened, what, ms),
  };
}

/**
 * A store acquire of `key` for `ticket`: exclusive, no acquire or hold
 * timeout, no steal, no meta, with `extra` overriding any of those.
 */
export function acquireInput(ticket: number, key: string, extra: Partial<AcquireInput> = {}): AcquireInput {
  return { ticket, key, mode: 'exclusive', acquireTimeout: null, holdTimeout: null, steal: false, meta: null, ...extra };
}

/** A store listener that ignores every call but those `overrides` handle. */
export function quietListener(overrides: Partial<StoreListener> = {}): StoreListener {
  return { granted() {}, acquireTimedOut() {}, waitDone() {}, lost() {}, ...overrides };
}

type StubBehaviour = {
  [K in keyof LockStore as LockStore[K] extends (...args: never[]) => unknown ? K : never]: LockStore[K];
};

function freeStatus(key: string): LockStatus {
  return { key, locked: false, mode: null, holders: [], queue: [], heldByYou: false };
}

/**
 * A `LockStore` whose every method is a replaceable function, with defaults
 * that queue acquires and waits forever: for driving the session layer into
 * exact situations. `calls` records each call by method name. `limits` are
 * the limits it claims to enforce (the defaults unless given).
 */
export function createStubStore(overrides: Partial<StubBehaviour> = {}, limits: Partial<StoreLimits> = {}) {
  const calls: Array<{ method: string; args: unknown[] }> = [];
  const sinks: Array<(event: LockEvent) => void> = [];
  const state: { listener: StoreListener | null } = { listener: null };
  const behaviour: StubBehaviour = {
    start: async (listener) => {
      state.listener = listener;
    },
    acquire: async (_s: SessionId, _i: AcquireInput): Promise<AcquireOutcome> => ({ status: 'queued', position: 1 }),
    release: async () => {},
    extend: async () => null,
    wait: async (_s: SessionId, _i: WaitInput) => 'pending' as const,
    cancel: async (_s: SessionId, _t: Ticket) => true,
    status: async (key) => freeStatus(key),
    list: async (): Promise<ListResult> => ({ locks: [], truncated: false }),
    watch: async (_p, _l, _v, sink): Promise<WatchHandle> => {
      sinks.push(sink);
      return {
        snapshot: { locks: [], truncated: false },
        stop: () => {
          const index = sinks.indexOf(sink);
          if (index !== -1) sinks.splice(index, 1);
        },
      };
    },
    revoke: async () => 0,
    closeSession: async () => {},
    close: async () => {},
    ...overrides,
  };
  const record =
    <A extends unknown[], R>(method: string, fn: (...args: A) => R) =>
    (...args: A): R => {
      calls.push({ method, args });
      return fn(...args);
    };
  const store: LockStore = {
    kind: 'stub',
    limits: {
      maxLocksPerSession: limits.maxLocksPerSession ?? DEFAULT_LIMITS.maxLocksPerSession,
      maxWaitersPerKey: limits.maxWaitersPerKey ?? DEFAULT_LIMITS.maxWaitersPerKey,
    },
    start: record('start', (l: StoreListener) => behaviour.start(l)),
    acquire: record('acquire', (s: SessionId, i: AcquireInput) => behaviour.acquire(s, i)),
    release: record('release', (s: SessionId, k: string) => behaviour.release(s, k)),
    extend: record('extend', (s: SessionId, k: string, h: number | null) => behaviour.extend(s, k, h)),
    wait: record('wait', (s: SessionId, i: WaitInput) => behaviour.wait(s, i)),
    cancel: record('cancel', (s: SessionId, t: Ticket) => behaviour.cancel(s, t)),
    status: record('status', (k: string, v: SessionId | null) => behaviour.status(k, v)),
    list: record('list', (p: string, l: number, v: SessionId | null) => behaviour.list(p, l, v)),
    watch: record('watch', (p: string, l: number, v: SessionId | null, sink: (e: LockEvent) => void) =>
      behaviour.watch(p, l, v, sink),
    ),
    revoke: record('revoke', (k: string) => behaviour.revoke(k)),
    closeSession: record('closeSession', (s: SessionId) => behaviour.closeSession(s)),
    close: record('close', () => behaviour.close()),
  };
  const listener = (): StoreListener => {
    if (!state.listener) throw new Error('the store was not started');
    return state.listener;
  };
  return { store, calls, sinks, listener, behaviour };
}

/** The input of the `n`-th (0-based) call of `method` to a stub store. */
export function callArgs(calls: ReadonlyArray<{ method: string; args: unknown[] }>, method: string, n = 0): unknown[] {
  const found = calls.filter((c) => c.method === method)[n];
  if (!found) throw new Error(`no call #${n} of ${method}`);
  return found.args;
}

/**
 * Servers over stub stores for one test file, each met by a raw client:
 * `start(stub)` serves `stub` on port 0 (no heartbeat) and returns a client
 * connected to it; `closeAll()`, for `afterEach`, drops every client and
 * closes every server that `start` opened.
 */
export function stubServers() {
  const servers: LockServer[] = [];
  const clients: RawClient[] = [];
  return {
    async start(stub: ReturnType<typeof createStubStore>): Promise<RawClient> {
      const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: stub.store });
      servers.push(server);
      const { client } = await RawClient.connect(server.url);
      clients.push(client);
      return client;
    },
    async closeAll(): Promise<void> {
      for (const client of clients.splice(0)) client.ws.terminate();
      await Promise.all(servers.splice(0).map((server) => server.close()));
    },
  };
}
