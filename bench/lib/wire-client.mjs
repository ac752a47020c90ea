// The load generator's client: a raw `ws` connection that sends JSON request
// frames and matches answers by `id`. The same client drives lockwire and
// the echo anchor: an echoed frame carries the request's own `id`, so it
// answers the request exactly as lockwire's `reply` does.
import { WebSocket } from 'ws';

/**
 * One connection. `request(body)` sends `{...body, id}` and resolves
 * `{ message, at }` with the answer and `performance.now()` at its arrival.
 * `queued` pushes resolve `onQueued(id)`; other pushes go to `onPush`.
 */
export class WireClient {
  /** @type {Map<number, { resolve: (value: { message: any, at: number }) => void, queued?: (at: number) => void }>} */
  #pending = new Map();
  #nextId = 1;
  /** @type {((message: any, at: number) => void) | null} */
  onPush = null;
  /** Called with the arrival time of each frame, before parsing; replaces parsing when `rawOnly`. */
  onRawFrame = null;
  rawOnly = false;

  /** @param {WebSocket} ws */
  constructor(ws) {
    this.ws = ws;
    ws.on('message', (data) => this.#onFrame(data));
  }

  /**
   * Opens a connection; with `welcome` set, resolves only after the server's
   * first message (lockwire's `welcome`), so the session exists.
   * @param {string} url
   * @param {{ welcome?: boolean }} [options]
   */
  static connect(url, options = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      const client = new WireClient(ws);
      ws.once('error', reject);
      if (options.welcome) {
        client.onPush = () => {
          client.onPush = null;
          resolve(client);
        };
      } else {
        ws.once('open', () => resolve(client));
      }
    });
  }

  #onFrame(data) {
    const at = performance.now();
    if (this.rawOnly) {
      this.onRawFrame?.(at);
      return;
    }
    const message = JSON.parse(data.toString());
    const waiting = typeof message.id === 'number' ? this.#pending.get(message.id) : undefined;
    if (waiting && message.type === 'queued') {
      waiting.queued?.(at);
      return;
    }
    // `reply` from lockwire; the request itself (it has an `op`) from the echo server.
    if (waiting && (message.type === 'reply' || message.op !== undefined)) {
      this.#pending.delete(message.id);
      waiting.resolve({ message, at });
      return;
    }
    this.onPush?.(message, at);
  }

  /**
   * Sends a request; resolves with its answer. `sentAt` is set just before
   * the frame is handed to the socket.
   * @param {Record<string, unknown>} body
   * @returns {{ id: number, sentAt: number, answer: Promise<{ message: any, at: number }>, queued: Promise<number> }}
   */
  send(body) {
    const id = this.#nextId++;
    let entry;
    const queued = new Promise((resolveQueued) => {
      entry = { resolve: () => {}, queued: resolveQueued };
    });
    const answer = new Promise((resolve) => {
      entry.resolve = resolve;
    });
    this.#pending.set(id, entry);
    const sentAt = performance.now();
    this.ws.send(JSON.stringify({ ...body, id }));
    return { id, sentAt, answer, queued };
  }

  /** Sends a request and resolves its answer. */
  async request(body) {
    return (await this.send(body).answer).message;
  }

  /** Closes cleanly (resolves when closed). */
  close() {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', resolve);
      this.ws.close();
    });
  }
}

/**
 * Opens `count` connections, `batch` at a time (a burst of thousands of
 * handshakes at once only measures the accept backlog).
 */
export async function connectMany(url, count, options = {}, batch = 250) {
  const clients = [];
  for (let i = 0; i < count; i += batch) {
    const size = Math.min(batch, count - i);
    clients.push(...(await Promise.all(Array.from({ length: size }, () => WireClient.connect(url, options)))));
  }
  return clients;
}

/** Closes every client, `batch` at a time. */
export async function closeAll(clients, batch = 500) {
  for (let i = 0; i < clients.length; i += batch) await Promise.all(clients.slice(i, i + batch).map((c) => c.close()));
}
