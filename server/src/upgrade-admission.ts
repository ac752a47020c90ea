/**
 * WebSocket upgrade admission: everything a request to the WebSocket
 * endpoint goes through before a WebSocket exists (path, shutdown, the
 * connection limit, Origin and credentials, a resume claiming its session
 * out of grace) and the raw HTTP refusal when it fails. Separate from the
 * server's assembly because it is one self-contained gate with its own
 * bookkeeping (upgrades in flight) and its own failure paths, while the
 * server only needs to hear about connections that were let in. A request
 * that offers another protocol than WebSocket is handed back to the HTTP
 * handler here, since Node routes every Upgrade to this listener.
 */
import { ServerResponse, type IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { PROTOCOL_PATH } from '@lockwire/protocol';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Authenticator } from './auth.js';
import type { ResumableSession, Resumption, SessionGrace } from './grace.js';
import type { Logger } from './logger.js';
import type { LockMetrics, UpgradeRefusal } from './metrics.js';
import type { Permissions } from './permissions.js';
import { redactRequestTarget } from './redact-url.js';
import { parseRequestUrl } from './request-url.js';
import type { SessionId } from './store.js';

/** What the upgrade gate of one server reads and calls. */
export interface UpgradeAdmissionOptions {
  /** The server's WebSocket server (`noServer`): its `clients` count against `maxConnections`. */
  wss: WebSocketServer;
  /**
   * Open sockets plus upgrades in flight past which an upgrade is refused
   * with 503, unless it resumes a live session while the server is exactly
   * at this limit (see `liveSession`): the count never exceeds it by more
   * than one.
   */
  maxConnections: number;
  /** Checks Origin and credentials; its refusals become 401/403. */
  authenticator: Authenticator;
  /** Session grace: a resume takes its session out of grace before the socket opens. */
  grace: SessionGrace;
  /**
   * Every refusal is logged as `upgrade refused`, with its status and
   * reason: at `info` for credentials or Origin (401, 403), at `debug` for
   * the rest (400, 404, 405, 503), which scanners and reconnect storms at
   * the connection cap send at the rate they like.
   */
  logger: Logger;
  /** Every refusal is counted by status. */
  metrics: Pick<LockMetrics, 'upgradeRefused'>;
  /** True once the server is closing: upgrades are refused with 503. */
  isClosing(): boolean;
  /**
   * The live connection of a session, for a resume that supersedes it. At
   * `maxConnections` (not over it) a resume naming one by its resume secret
   * is let in: it replaces that connection.
   */
  liveSession(session: SessionId): LiveSession | undefined;
  /** Called once per WebSocket let in, with its permissions and the resume it carried (if any). */
  connected(ws: WebSocket, req: IncomingMessage, permissions: Permissions, resumption: Resumption | null): void;
  /** The server's HTTP handler: answers a request that offers another protocol than WebSocket. */
  serveHttp(req: IncomingMessage, res: ServerResponse): void;
}

/** The live connection of a session as the gate sees it: resumable, and opened by the credentials of `user`. */
export interface LiveSession extends ResumableSession {
  /** The credentials' `sub` the session was opened with, or null. */
  readonly user: string | null;
}

/**
 * True when the request's `session` and `resume` parameters name a live
 * session by its resume secret: a resume that supersedes that connection.
 * The credentials' user is not known yet; the resume itself checks it.
 */
function resumesLive(url: URL, liveSession: UpgradeAdmissionOptions['liveSession']): boolean {
  const session = url.searchParams.get('session');
  const secret = url.searchParams.get('resume');
  if (session === null || secret === null) return false;
  const live = liveSession(session);
  return live !== undefined && live.accepts(secret, live.user);
}

/** True when the request's Upgrade header (a list of protocols, in any case) offers WebSocket. */
function offersWebSocket(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').split(',').some((offer) => offer.trim().toLowerCase() === 'websocket');
}

/**
 * Answers a request that offers another protocol (`curl --http2` offers
 * h2c) as if it offered none, with `serveHttp`: RFC 9110 7.8 lets a server
 * ignore an Upgrade. Node sends every request with an Upgrade to the
 * 'upgrade' listeners once there is one, its socket taken from the HTTP
 * parser: no further request can be read on it, so the answer is the
 * connection's last (`Connection: close`) and the socket ends with it.
 */
function answerWithoutUpgrade(req: IncomingMessage, socket: Duplex, serveHttp: UpgradeAdmissionOptions['serveHttp']): void {
  // An http.Server's sockets are net (or TLS) sockets, which a response can write to.
  if (!(socket instanceof Socket)) return void socket.destroy();
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  res.once('finish', () => {
    res.detachSocket(socket);
    socket.end(() => socket.destroy());
  });
  serveHttp(req, res);
}

/** The reason phrase of each refusal's status line. */
const STATUS_TEXT: Readonly<Record<UpgradeRefusal, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  503: 'Service Unavailable',
};

/**
 * Answers a refused upgrade on the raw socket with `status` and no body,
 * then destroys the socket. A 401 carries `WWW-Authenticate: Bearer`, and
 * a 400 of a request without a WebSocket version `ws` speaks carries
 * `Sec-WebSocket-Version`. A socket its peer already reset has no one to
 * answer: it is left as is.
 */
function answerRefusal(req: IncomingMessage, socket: Duplex, status: UpgradeRefusal): void {
  if (socket.destroyed) return;
  // RFC 9110: a 401 names the scheme that would be accepted, as the HTTP endpoints' 401 does.
  const challenge = status === 401 ? 'WWW-Authenticate: Bearer\r\n' : '';
  // RFC 6455 4.2.2: a version the server does not speak is answered with the ones it does.
  const version = Number(req.headers['sec-websocket-version']);
  const versions = status === 400 && version !== 13 && version !== 8 ? 'Sec-WebSocket-Version: 13, 8\r\n' : '';
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\n${challenge}${versions}Connection: close\r\nContent-Length: 0\r\n\r\n`,
  );
  socket.destroy();
}

/** The error listener of an upgrade's socket until ws takes it: a reset ends the socket, and nothing else. */
function destroySocket(this: Duplex): void {
  this.destroy();
}

/**
 * Builds the `upgrade` listener of the server's `http.Server`. A request
 * that offers another protocol than WebSocket is answered by `serveHttp`
 * as a plain request, on a connection that ends after it. Of a WebSocket
 * upgrade, it refuses with 400 an unparsable target, 404 any path but the protocol's, 503 while
 * closing or past `maxConnections` (but for a resume that supersedes a
 * live connection of its session while exactly at the limit), and 401/403 as the authenticator says;
 * then `ws` refuses a handshake it cannot complete: 405 a method but GET,
 * 400 a bad Upgrade, Sec-WebSocket-Key, -Version or -Protocol header
 * (-Extensions is not read: compression is off). Each refusal is logged as `upgrade refused` (with its status and
 * reason; see `logger` for the level) and counted by status; otherwise it completes the handshake and calls `connected`. A resume
 * whose connection never opens goes back into grace (or ends, if the server
 * is closing), as does one whose peer resets its connection meanwhile,
 * which is dropped without an answer. A live connection of the session
 * a resume takes is closed with 4001 only once the resumed connection
 * opens; when it does not, with 1011 (1001 if closing), for its client to
 * resume. Never throws: an unexpected failure is logged as `upgrade
 * failed` and the socket destroyed.
 */
export function createUpgradeAdmission(
  options: UpgradeAdmissionOptions,
): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const { wss, maxConnections, authenticator, grace, logger, metrics, isClosing } = options;
  let upgrading = 0;

  // Every refusal leaves a log line and a count, whatever refused it: an
  // operator sees connections turned away at the cap or while draining as
  // well as those without credentials.
  const refuse = (req: IncomingMessage, socket: Duplex, status: UpgradeRefusal, reason: string) => {
    const fields = { url: redactRequestTarget(req.url), status, reason };
    if (status === 401 || status === 403) logger.info(fields, 'upgrade refused');
    else logger.debug(fields, 'upgrade refused');
    metrics.upgradeRefused(status);
    answerRefusal(req, socket, status);
  };

  // With a listener here `ws` leaves the answer to a handshake it refuses
  // to it, called within `handleUpgrade`. Its only refusal that is not 400
  // is of a method but GET, which it checks first.
  wss.on('wsClientError', (error, socket, req) => {
    refuse(req, socket, req.method === 'GET' ? 400 : 405, error.message);
  });

  // Credentials, Origin and the connection limit are checked before the
  // WebSocket exists; a resume takes its session out of grace here. The
  // limit counts sockets, not sessions: one the server is closing has left
  // the server's sessions but stays open until its peer answers or it is
  // cut, and `wss.clients` keeps it until then. At the limit, a resume of a
  // live session is let in all the same: it replaces a connection the
  // server counts, which may be half-open and only cut by the heartbeat
  // much later. The superseded socket counts until its close completes or
  // it is cut, as any socket the server closes.
  //
  // That exemption holds only while the count (open sockets and upgrades in
  // progress, the exempted one among them) is exactly at the limit, never
  // over it, so the count never exceeds the limit by more than one: one
  // resume let in this way, while it is checked, then its superseded
  // socket, while that closes (2 seconds at most). Without this, one
  // session resumed over and over (each old peer silent) or many resumes
  // checked at once would each add a socket past the limit. A bound per
  // session instead (no exempted resume while one of the same session is in
  // progress or its superseded socket closes) would let every session add
  // one: twice the limit. Another resume at the limit meanwhile is refused
  // 503 at once, before its token is checked, and its client retries.
  const admit = async (req: IncomingMessage, url: URL, socket: Duplex, head: Buffer) => {
    const count = wss.clients.size + upgrading;
    const exempted = count >= maxConnections;
    if (exempted && (count > maxConnections || !resumesLive(url, options.liveSession))) {
      return refuse(req, socket, 503, 'maxConnections');
    }
    upgrading++;
    let resumption: Resumption | null = null;
    try {
      const admission = await authenticator.admit(req);
      if (!admission.ok) return refuse(req, socket, admission.status, admission.reason);
      // A peer gone during the token's check must not take over the live
      // connection of the session it names, nor may a resume refused
      // because the drain began meanwhile: open sessions go on being
      // served through the drain delay.
      if (socket.destroyed) return;
      if (isClosing()) return refuse(req, socket, 503, 'shutting down');
      const resumed = await grace.resume(url, admission.permissions.user, options.liveSession);
      // Set before anything returns, so a claimed session is given back below.
      resumption = resumed === 'unavailable' ? null : resumed;
      if (socket.destroyed) return;
      if (isClosing()) return refuse(req, socket, 503, 'shutting down');
      // The session is back in its grace: its client tries again, with the same secret, once the store answers.
      if (resumed === 'unavailable') return refuse(req, socket, 503, 'store unavailable');
      // Let in past the limit for a resume that took nothing over: the
      // credentials name another user, or another resume took it first.
      if (exempted && resumption === null) return refuse(req, socket, 503, 'maxConnections');
      const admitted = resumption;
      // ws puts its own error listener on the socket first thing in
      // `handleUpgrade`, and keeps one there from then on.
      socket.off('error', destroySocket);
      // Without `verifyClient`, `handleUpgrade` calls back at once, or never
      // when it refuses the handshake itself (a malformed
      // Sec-WebSocket-Key, say: answered by the 'wsClientError' listener
      // above): the claimed session is then given back below.
      wss.handleUpgrade(req, socket, head, (ws) => {
        resumption = null;
        options.connected(ws, req, admission.permissions, admitted);
      });
    } finally {
      upgrading--;
      // Claimed for a connection that never opened: back into grace (or ended, if the server is closing).
      if (resumption) grace.restore(resumption);
    }
  };

  return (req, socket, head) => {
    // Node takes its own error listener off a socket it hands to 'upgrade'
    // listeners: until ws takes the socket, a reset from the peer (while
    // the token is verified or a resume reads the store) would be an
    // uncaught error that ends the process.
    socket.on('error', destroySocket);
    if (!offersWebSocket(req)) return answerWithoutUpgrade(req, socket, options.serveHttp);
    const url = parseRequestUrl(req.url);
    if (url === null) return refuse(req, socket, 400, 'unparsable request target');
    if (url.pathname !== PROTOCOL_PATH) return refuse(req, socket, 404, `not ${PROTOCOL_PATH}`);
    if (isClosing()) return refuse(req, socket, 503, 'shutting down');
    admit(req, url, socket, head).catch((error: unknown) => {
      // A rejection here would end the process: one request must not.
      logger.error({ err: error, url: redactRequestTarget(req.url) }, 'upgrade failed');
      socket.destroy();
    });
  };
}
