/**
 * What the client needs from a WebSocket. The core never touches a socket
 * type directly, so the same code runs on the browser's `WebSocket` and on
 * Node's `ws`, and a test can wrap a transport to observe or delay frames.
 */
export interface Transport {
  /** Sends one text frame. Only called after `open`. */
  send(text: string): void;
  /** Starts the closing handshake; `close` is reported through the handlers. */
  close(code?: number, reason?: string): void;
  /**
   * Closes without waiting for the closing handshake: sends the closing
   * frame (best effort) and drops the socket at once, for a connection the
   * client gave up on (a path gone silent, no welcome), whose peer would
   * never answer. `close` is reported through the handlers, soon. Optional:
   * without it the client calls `close(code, reason)`, and the socket closes
   * whenever the runtime gives up on the handshake.
   */
  abort?(code: number, reason: string): void;
}

/** Callbacks a transport reports to. `close` is called exactly once, last. */
export interface TransportHandlers {
  open(): void;
  /** A frame arrived: its text, or `null` for a binary frame. */
  message(text: string | null): void;
  /** The socket failed; a `close` follows. */
  error(error: unknown): void;
  /**
   * The socket closed, with the code and reason the runtime reports.
   * `pageLeft` is true only for a close the transport itself sent as its
   * page left (a closing frame with 1000 that went out on an open socket):
   * the server ended the session on it, unless the network path was dead
   * and the frame never arrived, so the leases end at once. A
   * 1000 from anyone else (a proxy restarting, an idle timeout) says
   * nothing of what the server saw and comes without it.
   */
  close(code: number, reason: string, pageLeft?: boolean): void;
}

/** Opens a transport to `url`. Must not throw for network failures: report them as `error` + `close`. */
export type TransportFactory = (url: string, handlers: TransportHandlers) => Transport;

/** The close code reported for a connection that ended without a closing handshake. */
export const ABNORMAL_CLOSURE = 1006;
/**
 * A deliberate close: the server releases the session's locks without
 * grace. Besides 4000-4999, the only code a browser lets a page close with.
 */
export const NORMAL_CLOSURE = 1000;
/** The reason of the close a transport sends as its page leaves. */
const PAGE_LEFT = 'page left';

/** Options of {@link createWebSocketTransport}. */
export interface WebSocketTransportOptions {
  /**
   * Close the socket with 1000 (normal) on `pagehide`, so the server ends
   * the page's session and releases its locks at once, whether the page is
   * being discarded or kept in the back/forward cache (`persisted: true`).
   * Default `true`.
   *
   * Without it a discarded page's socket is closed by the browser with
   * 1001 (going away), which a server with session grace treats as a drop:
   * it holds the locks for the grace, though a page that is gone can never
   * resume (its resume secret lived in its memory). A cached page is worse
   * off: the browser freezes it with its socket open, so its session and
   * locks last for as long as the page stays cached, grace or not. A page
   * shown again from the cache (`pageshow` with `persisted: true`) finds
   * its connection closed and the client reconnects as after any drop; the
   * session it had has ended, so that is a new session, and the locks it
   * held are lost (`connection_lost`). Set `false` only when the page hands
   * its session to something that outlives it.
   */
  closeOnPageHide?: boolean;
}

/**
 * Makes a transport over the runtime's global `WebSocket` (browsers, Deno,
 * Node 22+). Browsers cannot set request headers; credentials go in the URL.
 * The factory throws `TypeError` when the runtime has no global `WebSocket`.
 */
export function createWebSocketTransport(options: WebSocketTransportOptions = {}): TransportFactory {
  const { closeOnPageHide = true } = options;
  return (url, handlers) => {
    const WebSocketImpl: typeof WebSocket | undefined = globalThis.WebSocket;
    if (typeof WebSocketImpl !== 'function') {
      throw new TypeError(
        'no global WebSocket in this runtime: import @lockwire/client under Node (it uses ws) or pass `transport`',
      );
    }
    const socket = new WebSocketImpl(url);
    let closed = false;
    // Set once the page left and this transport's closing frame went out for it.
    let left = false;
    // Only a window has pagehide; workers and Node have no page to leave.
    const page = closeOnPageHide && 'onpagehide' in globalThis ? globalThis : undefined;
    // Also when `persisted`: a page frozen in the back/forward cache keeps its socket, and so its session, open.
    const onPageHide = () => {
      // Only an open socket sends the closing frame the server ends the session on. One that is closing
      // already got or sent another close (the server's code is the one to report), and a connect stopped
      // before it was established is failed without any frame: the server saw a drop and keeps the grace.
      // A page shown again from the cache and left again before the close event finds its own close under
      // way (the socket closing): the mark it set then stands.
      if (socket.readyState === WebSocketImpl.OPEN) left = true;
      socket.close(NORMAL_CLOSURE, PAGE_LEFT);
    };
    page?.addEventListener('pagehide', onPageHide);
    socket.addEventListener('open', () => handlers.open());
    socket.addEventListener('message', (event: MessageEvent<unknown>) => {
      handlers.message(typeof event.data === 'string' ? event.data : null);
    });
    socket.addEventListener('error', (event) => handlers.error(event));
    socket.addEventListener('close', (event) => {
      if (closed) return;
      closed = true;
      page?.removeEventListener('pagehide', onPageHide);
      // The server ends the session on the close frame this transport sent as the page left; the
      // browser may still report 1006 when the page is frozen or gone before the server's answer
      // arrives, which the client would take for a drop to resume from. It is the page-left close.
      if (left) handlers.close(NORMAL_CLOSURE, PAGE_LEFT, true);
      else handlers.close(event.code || ABNORMAL_CLOSURE, event.reason);
    });
    // No `abort`: a browser's WebSocket has no way to drop a socket without the closing handshake, so the
    // client falls back to `close`, and the browser ends the handshake it waits for on its own.
    return {
      send: (text) => socket.send(text),
      close: (code, reason) => socket.close(code, reason),
    };
  };
}

/**
 * The default transport: {@link createWebSocketTransport} with its
 * defaults, so a page that closes, or navigates away, ends its session at
 * once.
 *
 * @throws TypeError when the runtime has no global `WebSocket`.
 */
export const webSocketTransport: TransportFactory = createWebSocketTransport();
