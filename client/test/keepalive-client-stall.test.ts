import { describe, expect, it } from 'vitest';
import { createWsTransport, type TransportFactory } from '@lockwire/client';
import { startHarness, within } from './fixtures.js';

/** Blocks the process for `ms`: a client-side stall (a long task, a GC pause), not a wait for a result. */
function stall(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // The process does nothing else meanwhile: no timer runs, no socket is read.
  }
}

describe('keepalive and a stalled client', () => {
  it.each([1.2, 1.4])(
    'a client stall of %f x timeout right after its keepalive ping is not taken for the server going silent',
    async (factor) => {
      const h = await startHarness();
      try {
        const timeout = 200;
        const inner = createWsTransport();
        let answers = 0;
        let secondAnswer = () => {};
        const answered = new Promise<void>((resolve) => (secondAnswer = resolve));
        let stalled = false;
        const transport: TransportFactory = (url, handlers) => {
          const socket = inner(url, {
            ...handlers,
            message(text) {
              if (text !== null && text.includes('"keepalive-') && ++answers === 2) secondAnswer();
              handlers.message(text);
            },
          });
          return {
            send(text) {
              socket.send(text);
              // The first keepalive ping went out (the server answers it within a millisecond); then the
              // client's own event loop stalls past the timeout, less than half a timeout more (an I/O
              // callback doing heavy work), so the answer is in the socket, unread, when the timer is due.
              if (!stalled && text.includes('"keepalive-')) {
                stalled = true;
                setImmediate(() => stall(timeout * factor));
              }
            },
            close: (code, reason) => socket.close(code, reason),
          };
        };
        const client = await h.connect({ transport, reconnect: false, keepalive: { interval: 100, timeout } });
        const disconnects: unknown[] = [];
        client.on('disconnect', (info) => disconnects.push(info));
        await within(
          Promise.race([answered, new Promise((resolve) => client.on('disconnect', resolve))]),
          3000,
          'a second keepalive answer or a disconnect',
        );
        expect(stalled).toBe(true);
        expect(disconnects).toEqual([]);
        expect(client.state).toBe('open');
      } finally {
        await h.close();
      }
    },
  );
});
