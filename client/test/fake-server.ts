import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { within } from './fixtures.js';

/** A frame the client sent, parsed. */
export type Frame = Record<string, unknown>;

/** One client connection to a {@link FakeServer}. */
export interface FakeConnection {
  /** The URL the client connected to, with its query (`session`, `resume`). */
  readonly url: URL;
  /** Frames the client sent, in order. */
  readonly received: Frame[];
  /** Sends a server message as one JSON text frame. */
  send(message: Record<string, unknown>): void;
  /** Replies `ok` to request `id` with `result`'s fields. */
  reply(id: unknown, result: Record<string, unknown>): void;
  /** Resolves with the next frame (optionally of `op`) not yet taken by an earlier call (bounded). */
  nextRequest(op?: string): Promise<Frame>;
  /** Drops the TCP connection without a closing handshake (the client sees 1006). */
  terminate(): void;
  /** Closes with a close frame carrying `code` and `reason`. */
  close(code: number, reason: string): void;
  /** Resolves with the close code once the socket closed: the client's, or 1006 for a drop without a close frame. */
  readonly closed: Promise<number>;
}

/** Options of {@link startFakeServer}. */
export interface FakeServerOptions {
  /** The welcome's extra fields for the n-th connection (0-based), e.g. `resume`, `grace`, `resumed`, `held`. */
  welcome?: (n: number, url: URL) => Record<string, unknown>;
  /**
   * Answers a request; return `undefined` to leave it for the test. Default:
   * `ping`, `watch`, `list`, `unwatch` and `release` get minimal `ok` replies.
   */
  respond?: (frame: Frame, connection: FakeConnection) => Record<string, unknown> | undefined;
}

/** A scriptable protocol-v1 server on port 0, for client behaviour the real server does not show yet. */
export interface FakeServer {
  readonly url: string;
  readonly connections: FakeConnection[];
  /** Resolves with the n-th connection (0-based) once it exists (bounded). */
  connection(n: number): Promise<FakeConnection>;
  close(): Promise<void>;
}

const LIMITS = { maxPayload: 65536, maxKeyLength: 256, maxLocksPerSession: 1000, maxWaitersPerKey: 10000 };

/** Minimal answers for requests the client sends on its own (watch re-establishment, releases). */
export function defaultResponse(frame: Frame): Record<string, unknown> | undefined {
  switch (frame.op) {
    case 'ping':
      return { at: 0 };
    case 'watch':
    case 'list':
      return { locks: [], truncated: false };
    case 'unwatch':
      return {};
    case 'release':
      return { released: true };
    default:
      return undefined;
  }
}

/** Starts a fake server that greets each connection with a welcome naming session `s<n>` unless told otherwise. */
export async function startFakeServer(options: FakeServerOptions = {}): Promise<FakeServer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const { port } = wss.address() as AddressInfo;
  const connections: FakeConnection[] = [];
  const arrivals: ((connection: FakeConnection) => void)[] = [];
  const respond = options.respond ?? defaultResponse;

  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    const n = connections.length;
    const url = new URL(request.url ?? '/', `ws://127.0.0.1:${port}`);
    const connection = fakeConnection(socket, url);
    connections.push(connection);
    connection.send({
      type: 'welcome',
      session: `s${n}`,
      protocol: 1,
      server: 'fake/0',
      limits: LIMITS,
      ...options.welcome?.(n, url),
    });
    socket.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      const result = respond(frame, connection);
      if (result) connection.reply(frame.id, result);
    });
    for (const arrive of arrivals.splice(0)) arrive(connection);
  });

  return {
    url: `ws://127.0.0.1:${port}/v1`,
    connections,
    connection(n) {
      return within(
        new Promise<FakeConnection>((resolve) => {
          const check = () => {
            const found = connections[n];
            if (found) resolve(found);
            else arrivals.push(check);
          };
          check();
        }),
        2000,
        `connection ${n} to the fake server`,
      );
    },
    async close() {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

function fakeConnection(socket: WebSocket, url: URL): FakeConnection {
  const received: Frame[] = [];
  const waiters: { op: string | undefined; resolve: (frame: Frame) => void }[] = [];
  let taken = 0;
  const closed = new Promise<number>((resolve) => socket.once('close', (code: number) => resolve(code)));
  const take = () => {
    for (const waiter of [...waiters]) {
      const index = received.findIndex((frame, i) => i >= taken && (!waiter.op || frame.op === waiter.op));
      const frame = received[index];
      if (!frame) continue;
      taken = index + 1;
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(frame);
    }
  };
  socket.on('message', (data) => {
    received.push(JSON.parse(String(data)) as Frame);
    take();
  });
  const connection: FakeConnection = {
    url,
    received,
    closed,
    send: (message) => socket.send(JSON.stringify(message)),
    reply: (id, result) => connection.send({ type: 'reply', id, ok: true, ...result }),
    nextRequest(op) {
      const next = new Promise<Frame>((resolve) => {
        waiters.push({ op, resolve });
        take();
      });
      return within(next, 2000, `a ${op ?? 'request'} frame`);
    },
    terminate: () => socket.terminate(),
    close: (code, reason) => socket.close(code, reason),
  };
  return connection;
}
