import { connect, createServer, type Socket } from 'node:net';
import type { StoreListener } from '../src/store.js';

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
  close(): void;
}

export async function startPubSubProxy(targetPort: number): Promise<PubSubProxy> {
  const sockets = new Set<Socket>();
  const subscribers = new Set<{ silent: boolean }>();
  let lag = 0;
  let replyLag = 0;
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    const state = { subscriber: false, silent: false, last: 0 };
    client.on('data', (chunk) => {
      if (!state.subscriber && /subscribe/i.test(chunk.toString('latin1'))) {
        state.subscriber = true;
        subscribers.add(state);
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (state.silent) return;
      const at = Math.max(Date.now() + (state.subscriber ? lag : replyLag), state.last);
      state.last = at;
      if (at <= Date.now()) client.write(chunk);
      else setTimeout(() => client.write(chunk), at - Date.now());
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
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}
