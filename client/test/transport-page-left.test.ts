/**
 * The browser transport's own close as its page leaves is reported as that
 * close (1000, 'page left'), also when the browser reports 1006 because the
 * page was frozen or gone before the server's closing frame came back: the
 * server ended the session on the frame the page sent, and the client must
 * not take it for a drop to resume from.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createWebSocketTransport } from '@lockwire/client';

/** A page's WebSocket that never hears back: its close event reports what the test tells it to. */
class SilentSocket extends EventTarget {
  static last: SilentSocket | undefined;
  readonly sent: Array<{ code?: number; reason?: string }> = [];
  constructor(readonly url: string) {
    super();
    SilentSocket.last = this;
  }
  send(): void {}
  close(code?: number, reason?: string): void {
    this.sent.push({ code, reason });
  }
  /** The browser's close event, as it reports the connection's end. */
  closed(code: number, reason = ''): void {
    const event = Object.assign(new Event('close'), { code, reason, wasClean: code !== 1006 });
    this.dispatchEvent(event);
  }
}

let page: EventTarget;

beforeEach(() => {
  page = new EventTarget();
  vi.stubGlobal('WebSocket', SilentSocket);
  vi.stubGlobal('onpagehide', null);
  vi.stubGlobal('addEventListener', page.addEventListener.bind(page));
  vi.stubGlobal('removeEventListener', page.removeEventListener.bind(page));
});

afterEach(() => {
  vi.unstubAllGlobals();
});

function open(): { socket: SilentSocket; closes: Array<[number, string]> } {
  const closes: Array<[number, string]> = [];
  createWebSocketTransport()('ws://127.0.0.1:1/v1', {
    open: () => {},
    message: () => {},
    error: () => {},
    close: (code, reason) => closes.push([code, reason]),
  });
  const socket = SilentSocket.last;
  if (!socket) throw new Error('the transport opened no socket');
  return { socket, closes };
}

describe('the browser transport as its page leaves', () => {
  it('reports its own page-left close as 1000 page left when the browser reports the end as 1006', () => {
    const { socket, closes } = open();
    page.dispatchEvent(new Event('pagehide'));
    expect(socket.sent).toEqual([{ code: 1000, reason: 'page left' }]);
    socket.closed(1006);
    expect(closes).toEqual([[1000, 'page left']]);
  });

  it('reports a drop before the page left as the browser reports it', () => {
    const { socket, closes } = open();
    socket.closed(1006);
    page.dispatchEvent(new Event('pagehide'));
    expect({ sent: socket.sent, closes }).toEqual({ sent: [], closes: [[1006, '']] });
  });
});
