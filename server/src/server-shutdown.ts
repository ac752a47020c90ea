/**
 * The shutdown sequence of a lock server: drain delay, then sessions
 * drained and ended, sockets closed with 1001, grace ended, the store
 * closed, all under one timeout past which what is left is cut. Separate
 * from the server's assembly because its ordering is the whole point and
 * reads best in one place, apart from the wiring that builds the server.
 */
import type { Server } from 'node:http';
import type { WebSocketServer } from 'ws';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import type { SessionGrace } from './grace.js';
import type { Heartbeat } from './heartbeat.js';
import type { HttpConnections } from './http-connections.js';
import type { Logger } from './logger.js';
import type { ServerCloses } from './server-closes.js';
import type { Session } from './session.js';
import type { LockStore, SessionId } from './store.js';

/** The parts of one server its shutdown stops, and how long it may take. */
export interface ServerShutdownOptions {
  /** Time source of the drain delay and the shutdown timeout. */
  clock: Clock;
  logger: Logger;
  /** ms between the start of shutdown and the closing of any connection. */
  drainDelay: number;
  /** ms the closing of sessions and the store may take once the drain delay is over. */
  shutdownTimeout: number;
  /** The WebSocket heartbeat, stopped once the drain delay is over; null when off. */
  heartbeat: Heartbeat | null;
  wss: WebSocketServer;
  /** The closes the server starts: each socket is closed and cut through it. */
  closes: ServerCloses;
  httpServer: Server;
  /** Its plain HTTP connections: those without an answer in flight are closed once the drain delay is over. */
  httpConnections: HttpConnections;
  /** The server's live sessions, read once the drain delay is over. */
  sessions: ReadonlyMap<SessionId, Session>;
  /** Session grace: its sessions are ended, and its resumes in flight awaited, before the store closes. */
  grace: SessionGrace;
  /** Sessions being ended in the store, awaited before the store closes. */
  sessionEndings: ReadonlySet<Promise<void>>;
  store: LockStore;
}

/**
 * Runs the shutdown sequence; the caller has already marked the server
 * closing (so `/healthz` answers 503 and upgrades are refused). After
 * `drainDelay` it answers every pending request `shutting_down`, ends every
 * session, closes every socket with 1001, ends the sessions in grace and
 * those of resumes still in flight, waits for every session's end in the
 * store, then closes the store and the HTTP server. Past `shutdownTimeout` every
 * remaining socket is cut and the promise resolves without waiting for the
 * store. Rejects when the store's `close()` rejects before the timeout.
 */
export async function shutDownServer(options: ServerShutdownOptions): Promise<void> {
  const { clock, logger, drainDelay, shutdownTimeout, wss, httpServer } = options;
  logger.info({ drainDelay, shutdownTimeout }, 'draining');
  if (drainDelay > 0) await new Promise<void>((resolve) => clock.setTimeout(() => resolve(), drainDelay));
  options.heartbeat?.stop();
  let timer: TimerHandle | undefined;
  const timedOut = new Promise<'timed out'>((resolve) => {
    timer = clock.setTimeout(() => resolve('timed out'), shutdownTimeout);
  });
  const closing = closeAll(options);
  let outcome: 'closed' | 'timed out';
  try {
    outcome = await Promise.race([closing, timedOut]);
  } finally {
    clock.clearTimeout(timer);
  }
  if (outcome === 'timed out') {
    // The close goes on unawaited: a failure of the store's close after the
    // timeout is logged, not left an unhandled rejection that ends the process.
    closing.catch((error: unknown) => logger.error({ err: error }, 'store close failed after the shutdown timeout'));
    logger.error({ shutdownTimeout }, 'shutdown timed out; cutting the remaining connections');
    for (const ws of wss.clients) options.closes.terminate(ws);
    httpServer.closeAllConnections();
  }
  logger.info({}, 'lockwire stopped');
}

async function closeAll(options: ServerShutdownOptions): Promise<'closed'> {
  const { httpServer, wss, closes } = options;
  const httpClosed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
  // Not Node's closeIdleConnections(): it leaves open a connection that has
  // sent nothing or part of a request head, which then holds the shutdown
  // until its timeout.
  options.httpConnections.closeIdle();
  const live = [...options.sessions.values()];
  // Answer everything pending before any session's locks are released,
  // or a release would grant a request that should hear `shutting_down`.
  for (const session of live) session.drain();
  for (const session of live) session.end();
  // Every open socket, those the server was already closing included. The
  // bound counts in real time whatever the injected clock: close() ends
  // once every peer answered or was cut, even under a clock nobody advances.
  await Promise.all(
    [...wss.clients].map((ws) => closes.closeWithinHandshake(ws, 1001, 'server shutting down', systemClock)),
  );
  options.grace.drain();
  // A resume claimed its session out of grace before shutdown began and is
  // still reading the store: its connection will not open now (upgrades
  // are refused), and the restore that follows ends the session, adding an
  // ending the snapshot below would otherwise miss.
  await options.grace.settled();
  await Promise.all(options.sessionEndings);
  wss.close();
  await options.store.close();
  await httpClosed;
  return 'closed';
}
