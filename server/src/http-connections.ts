/**
 * The HTTP connections of a lock server below the requests they carry: a
 * request Node cannot parse is answered here, and shutdown learns which
 * connections it may close at once. Separate from the server's assembly
 * because it deals in raw sockets and Node's parser errors, which no
 * request handler ever sees.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from './logger.js';

/** The status and reason phrase a request Node refused to parse is answered with. */
type ClientErrorAnswer = readonly [status: 400 | 408 | 431, reason: string];

/**
 * The answer Node itself would give an unparsable request, which it stops
 * giving once the server listens for 'clientError': 431 for a head over
 * the header size limit (a long `access_token` in the URL included), 408
 * for a head not complete within the headers timeout, 400 for anything
 * else (a malformed request line or header).
 */
function clientErrorAnswer(error: Error): ClientErrorAnswer {
  const code = 'code' in error ? error.code : undefined;
  if (code === 'HPE_HEADER_OVERFLOW') return [431, 'Request Header Fields Too Large'];
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return [408, 'Request Timeout'];
  return [400, 'Bad Request'];
}

/**
 * Answers a request Node could not parse with `clientErrorAnswer`'s status,
 * no body and `Connection: close`, then ends the connection, so a browser
 * shows the status instead of a reset. A connection its peer reset, that
 * can no longer be written to, or that is still answering an earlier
 * request (an answer written into the middle of it would garble both) is
 * destroyed unanswered.
 */
function answerClientError(error: Error, socket: Duplex, answering: boolean, logger: Logger): void {
  const reset = 'code' in error && error.code === 'ECONNRESET';
  if (reset || answering || !socket.writable) return void socket.destroy();
  const [status, reason] = clientErrorAnswer(error);
  // Before any route or upgrade (nothing is known of the request but that it could not be read), so no upgrade
  // counter counts it: the log says what was refused, at debug as other refusals of a request's form are.
  const code = 'code' in error ? error.code : undefined;
  logger.debug({ remote: (socket as Partial<Socket>).remoteAddress, status, reason: code ?? error.message }, 'request refused');
  // Destroyed once the answer is written: the peer may never end its side
  // of a connection that has nothing more to say to it.
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
}

/** The HTTP connections of one server, as its shutdown sees them. */
export interface HttpConnections {
  /**
   * Destroys every HTTP connection that has no answer in flight: idle
   * keep-alive ones, and those that sent nothing yet (a browser's
   * preconnect) or only part of a request head, which Node counts as
   * active and would leave open until the shutdown timeout. Connections
   * upgraded to WebSocket are not touched: their shutdown closes them
   * with 1001.
   */
  closeIdle(): void;
}

/**
 * Watches the connections of `httpServer`: answers the requests Node cannot
 * parse (see `answerClientError`), and keeps the set of plain HTTP
 * connections and which of them have an answer in flight, for `closeIdle`.
 * Call before the server listens.
 */
export function watchHttpConnections(httpServer: Server, logger: Logger): HttpConnections {
  // Every connection not upgraded, with the number of its answers in flight
  // (a pipelining client may have several).
  const connections = new Map<Duplex, number>();
  // One listener shared by every socket (`this` is the socket), removed at the upgrade: a closure
  // per connection would stay with each of the server's WebSocket connections for its lifetime.
  function forget(this: Duplex): void {
    connections.delete(this);
  }
  httpServer.on('connection', (socket: Duplex) => {
    connections.set(socket, 0);
    socket.on('close', forget);
  });
  // An upgraded socket belongs to ws, or to the upgrade gate until its refusal or answer ends it.
  httpServer.on('upgrade', (_req: IncomingMessage, socket: Duplex) => {
    connections.delete(socket);
    socket.removeListener('close', forget);
  });
  // Ahead of the request handler, which may finish its answer before a listener after it runs.
  httpServer.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const inFlight = connections.get(socket);
    if (inFlight === undefined) return;
    connections.set(socket, inFlight + 1);
    let done = false;
    const answered = () => {
      if (done) return;
      done = true;
      const count = connections.get(socket);
      if (count !== undefined) connections.set(socket, count - 1);
    };
    res.once('finish', answered);
    res.once('close', answered);
  });
  httpServer.on('clientError', (error: Error, socket: Duplex) =>
    answerClientError(error, socket, (connections.get(socket) ?? 0) > 0, logger),
  );
  return {
    closeIdle: () => {
      for (const [socket, inFlight] of connections) if (inFlight === 0) socket.destroy();
    },
  };
}
