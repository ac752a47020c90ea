/**
 * The HTTP connections of a lock server below the requests they carry: a
 * request Node cannot parse is answered here. Separate from the server's
 * assembly because it deals in raw sockets and Node's parser errors, which
 * no request handler ever sees.
 */
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';

/** The status and reason phrase a request Node refused to parse is answered with. */
type ClientErrorAnswer = readonly [status: 400 | 408 | 431, reason: string];

/**
 * The answer Node itself would give an unparsable request, which it stops
 * giving once the server listens for 'clientError': 431 for a head over
 * the header size limit (a long `access_token` in the URL included), 408
 * for a head not complete within the headers timeout, 400 for anything
 * else (a malformed request line or header).
 */
export function clientErrorAnswer(error: Error): ClientErrorAnswer {
  const code = 'code' in error ? error.code : undefined;
  if (code === 'HPE_HEADER_OVERFLOW') return [431, 'Request Header Fields Too Large'];
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return [408, 'Request Timeout'];
  return [400, 'Bad Request'];
}

/**
 * The 'clientError' listener of the server: answers the request with
 * `clientErrorAnswer`'s status, no body and `Connection: close`, then ends
 * the connection, so a browser shows the status instead of a reset. A
 * connection its peer reset, or that can no longer be written to, is
 * destroyed unanswered.
 */
export function answerClientError(error: Error, socket: Duplex): void {
  const reset = 'code' in error && error.code === 'ECONNRESET';
  if (reset || !socket.writable) return void socket.destroy();
  const [status, reason] = clientErrorAnswer(error);
  // Destroyed once the answer is written: the peer may never end its side
  // of a connection that has nothing more to say to it.
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
}

/** Installs the server's answers to requests Node cannot parse; see `answerClientError`. */
export function watchHttpConnections(httpServer: Server): void {
  httpServer.on('clientError', answerClientError);
}
