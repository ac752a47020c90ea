/**
 * `@lockwire/client` for Node: the same client, connecting with `ws` by
 * default, so `headers` (e.g. `Authorization`) reach the upgrade request.
 */
import WebSocket from 'ws';
import { LockClient as CoreLockClient } from './lock-client.js';
import type { ConnectOptions } from './options.js';
import type { TransportFactory } from './transport.js';

export * from './index.js';

/** Options of the `ws` transport. */
export interface WsTransportOptions {
  /** HTTP headers sent with the upgrade request. */
  headers?: Record<string, string>;
  /**
   * Called with each `ws` socket the transport opens, before it connects:
   * for a caller that must be able to drop a socket at once (`terminate()`),
   * e.g. one whose server completed the upgrade but never sent a welcome,
   * where a polite close would wait for `ws`'s 30 s closing handshake.
   */
  onSocket?: (socket: WebSocket) => void;
}

/** A transport over the `ws` package. */
export function createWsTransport(options: WsTransportOptions = {}): TransportFactory {
  return (url, handlers) => {
    // Lock traffic is small JSON; compression would only cost memory on both ends.
    const socket = new WebSocket(url, { headers: options.headers, perMessageDeflate: false });
    options.onSocket?.(socket);
    socket.on('open', () => handlers.open());
    socket.on('message', (data, isBinary) => handlers.message(isBinary ? null : data.toString()));
    socket.on('error', (error) => handlers.error(error));
    socket.on('close', (code, reason) => handlers.close(code, reason.toString()));
    return {
      send: (text) => socket.send(text),
      close: (code, reason) => socket.close(code, reason),
      abort: (code, reason) => {
        // The closing frame goes out first, so should the path come back the server reads the code;
        // `terminate()` then drops the socket instead of waiting ws's 30 s for an answer that will not come.
        if (socket.readyState === WebSocket.OPEN) socket.close(code, reason);
        socket.terminate();
      },
    };
  };
}

/** The lockwire client; under Node it connects with `ws` unless given a `transport`. */
export class LockClient extends CoreLockClient {
  /** See the core `LockClient.connect()`; `headers` go to the upgrade request. */
  static override connect(url: string, options: ConnectOptions = {}): Promise<CoreLockClient> {
    return super.connect(url, {
      ...options,
      transport: options.transport ?? createWsTransport({ headers: options.headers }),
    });
  }
}
