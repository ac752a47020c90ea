import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';

/** A relay that passes a server's frames to its clients and drops theirs. */
export interface MuteRelay {
  /** The relay's `ws://` URL, to give the tool under test. */
  readonly url: string;
  /**
   * Resolves once a client sent a request with `op` (one already dropped
   * counts); rejects after `timeoutMs`.
   */
  requestSeen(op: string, timeoutMs?: number): Promise<void>;
  /** Drops every connection on both sides and stops listening. */
  close(): Promise<void>;
}

/**
 * A WebSocket relay on a port of its own in front of `target`: every frame
 * the server sends (its welcome included) reaches the client, and every
 * frame the client sends is dropped. The server welcomes the client and then
 * never answers a request, as a server behind a path that went half-open
 * after the connect.
 */
export async function startMuteRelay(target: string): Promise<MuteRelay> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const upstreams: WebSocket[] = [];
  const seen = new Set<string>();
  const waiters = new Set<{ op: string; resolve(): void }>();
  const dropped = (frame: string) => {
    const op = (JSON.parse(frame) as { op?: unknown }).op;
    if (typeof op !== 'string') return;
    seen.add(op);
    for (const waiter of [...waiters]) {
      if (waiter.op !== op) continue;
      waiters.delete(waiter);
      waiter.resolve();
    }
  };
  wss.on('connection', (socket) => {
    const upstream = new WebSocket(target);
    upstreams.push(upstream);
    upstream.on('message', (data) => socket.send(String(data)));
    upstream.on('error', () => undefined);
    socket.on('message', (data) => dropped(String(data)));
    socket.on('error', () => undefined);
  });
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/v1`,
    requestSeen(op, timeoutMs = 5000) {
      if (seen.has(op)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const waiter = {
          op,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no ${op} request reached the relay within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const upstream of upstreams) upstream.terminate();
        for (const client of wss.clients) client.terminate();
        wss.close(() => resolve());
      }),
  };
}
