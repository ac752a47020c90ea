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
}

/** Callbacks a transport reports to. `close` is called exactly once, last. */
export interface TransportHandlers {
  open(): void;
  /** A frame arrived: its text, or `null` for a binary frame. */
  message(text: string | null): void;
  /** The socket failed; a `close` follows. */
  error(error: unknown): void;
  close(code: number, reason: string): void;
}

/** Opens a transport to `url`. Must not throw for network failures: report them as `error` + `close`. */
export type TransportFactory = (url: string, handlers: TransportHandlers) => Transport;

/** The close code a browser reports when the connection dropped without a closing handshake. */
const ABNORMAL_CLOSURE = 1006;

/**
 * A transport over the runtime's global `WebSocket` (browsers, Deno, Node 22+).
 * Browsers cannot set request headers; credentials go in the URL.
 *
 * @throws TypeError when the runtime has no global `WebSocket`.
 */
export const webSocketTransport: TransportFactory = (url, handlers) => {
  const WebSocketImpl: typeof WebSocket | undefined = globalThis.WebSocket;
  if (typeof WebSocketImpl !== 'function') {
    throw new TypeError(
      'no global WebSocket in this runtime: import @lockwire/client under Node (it uses ws) or pass `transport`',
    );
  }
  const socket = new WebSocketImpl(url);
  let closed = false;
  socket.addEventListener('open', () => handlers.open());
  socket.addEventListener('message', (event: MessageEvent<unknown>) => {
    handlers.message(typeof event.data === 'string' ? event.data : null);
  });
  socket.addEventListener('error', (event) => handlers.error(event));
  socket.addEventListener('close', (event) => {
    if (closed) return;
    closed = true;
    handlers.close(event.code || ABNORMAL_CLOSURE, event.reason);
  });
  return {
    send: (text) => socket.send(text),
    close: (code, reason) => socket.close(code, reason),
  };
};
