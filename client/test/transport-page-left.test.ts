/**
 * The browser transport's own close as its page leaves is reported as that
 * close (1000, 'page left', marked as the page's), also when the browser
 * reports 1006 because the page was frozen or gone before the server's
 * closing frame came back: the server ended the session on the frame the
 * page sent, and the client must not take it for a drop to resume from.
 * A close the page's frame did not make (the server's, or a connect the
 * page gave up before it was established) is reported as the browser
 * reports it: the server saw no 1000 from the page.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createWebSocketTransport } from '@lockwire/client';
import { stubPageWindow } from './page-window.js';

/** A page's WebSocket that never hears back: its state and close event are what the test tells them to be. */
class SilentSocket extends EventTarget {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static last: SilentSocket | undefined;
  readyState = SilentSocket.OPEN;
  readonly sent: Array<{ code?: number; reason?: string }> = [];
  constructor(readonly url: string) {
    super();
    SilentSocket.last = this;
  }
  send(): void {}
  close(code?: number, reason?: string): void {
    this.sent.push({ code, reason });
    // As a browser does: close() on an open socket starts the closing handshake.
    if (this.readyState === SilentSocket.OPEN) this.readyState = SilentSocket.CLOSING;
  }
  /** The browser's close event, as it reports the connection's end. */
  closed(code: number, reason = ''): void {
    const event = Object.assign(new Event('close'), { code, reason, wasClean: code !== 1006 });
    this.dispatchEvent(event);
  }
}

let page: EventTarget;

beforeEach(() => {
  page = stubPageWindow(SilentSocket);
});

afterEach(() => {
  vi.unstubAllGlobals();
});

/** Opens a transport on a `SilentSocket`; `closes` records each close it reports, with whether it was the page's. */
function open(): { socket: SilentSocket; closes: Array<[number, string, boolean]> } {
  const closes: Array<[number, string, boolean]> = [];
  createWebSocketTransport()('ws://127.0.0.1:1/v1', {
    open: () => {},
    message: () => {},
    error: () => {},
    close: (code, reason, pageLeft) => closes.push([code, reason, pageLeft === true]),
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
    expect(closes).toEqual([[1000, 'page left', true]]);
  });

  it('still reports its own page-left close when the page is shown again and leaves again before the close event', () => {
    const { socket, closes } = open();
    page.dispatchEvent(new Event('pagehide'));
    // Shown again from the back/forward cache and left again while its closing handshake is still under way.
    page.dispatchEvent(new Event('pageshow'));
    page.dispatchEvent(new Event('pagehide'));
    socket.closed(1006);
    expect(closes).toEqual([[1000, 'page left', true]]);
  });

  it('reports its own page-left close as the page\'s when the server answers it with 1000', () => {
    const { socket, closes } = open();
    page.dispatchEvent(new Event('pagehide'));
    socket.closed(1000, 'page left');
    expect(closes).toEqual([[1000, 'page left', true]]);
  });

  it('reports a drop before the page left as the browser reports it', () => {
    const { socket, closes } = open();
    socket.closed(1006);
    page.dispatchEvent(new Event('pagehide'));
    expect({ sent: socket.sent, closes }).toEqual({ sent: [], closes: [[1006, '', false]] });
  });

  it('reports the server\'s close when the page leaves after the server\'s closing frame arrived', () => {
    const { socket, closes } = open();
    // The server's 1001 is in: the browser is answering it, and the socket is closing.
    socket.readyState = SilentSocket.CLOSING;
    page.dispatchEvent(new Event('pagehide'));
    socket.closed(1001, 'server shutting down');
    expect(closes).toEqual([[1001, 'server shutting down', false]]);
  });

  it('reports the browser\'s 1006 when the page leaves while the socket is still connecting', () => {
    const { socket, closes } = open();
    // A browser fails a connect that close() stops before it was established: no closing frame goes out.
    socket.readyState = SilentSocket.CONNECTING;
    page.dispatchEvent(new Event('pagehide'));
    socket.closed(1006);
    expect({ stopped: socket.sent.length, closes }).toEqual({ stopped: 1, closes: [[1006, '', false]] });
  });
});
