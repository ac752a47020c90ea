import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  PROTOCOL_PATH,
  PROTOCOL_VERSION,
  type HeldLock,
  type Limits,
  type WelcomeMessage,
} from '@lockwire/protocol';
import { nanoid } from 'nanoid';
import { WebSocketServer, type WebSocket } from 'ws';
import { createAuthenticator, type AuthOptions } from './auth.js';
import { systemClock, type Clock } from './clock.js';
import { CLOSE_HANDSHAKE_MS } from './close-handshake.js';
import { SessionGrace, type Resumption } from './grace.js';
import { newResumeSecret } from './grace-registry.js';
import { createHttpHandler } from './http.js';
import { startHeartbeat } from './heartbeat.js';
import { watchHttpConnections } from './http-connections.js';
import { guardHttp } from './http-guard.js';
import { limitsWithStore, resolveLimits, type ServerLimits } from './limits.js';
import { silentLogger, type Logger } from './logger.js';
import { createMemoryStore } from './memory-store.js';
import { createLockMetrics, type LockMetrics } from './metrics.js';
import { ServerCloses } from './server-closes.js';
import { shutDownServer } from './server-shutdown.js';
import { endSessionInStore } from './session-end.js';
import { Session } from './session.js';
import { createSessionRouting } from './session-routing.js';
import type { Permissions } from './permissions.js';
import { StoreStartError, type LockStore, type SessionId } from './store.js';
import { createUpgradeAdmission } from './upgrade-admission.js';

export type { ServerLimits } from './limits.js';

export interface LockServerOptions {
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; `0` picks a free one. Default 7311. */
  port?: number;
  /**
   * The lock table. Default: a memory store on `clock` with `limits`. A store
   * passed in enforces its own `maxLocksPerSession`/`maxWaitersPerKey` (its
   * `limits` option), which the welcome announces. `close()` closes it either way.
   */
  store?: LockStore;
  /** Time source of timeouts, `ping`, the drain delay and the shutdown timeout. Default the system clock. */
  clock?: Clock;
  /**
   * Every limit, each announced in `welcome.limits`; see `ServerLimits` for the defaults.
   * With a `store`, `maxLocksPerSession`/`maxWaitersPerKey` given here must equal the store's.
   */
  limits?: Partial<ServerLimits>;
  /**
   * Credentials required of every connection (JWTs: an HS256 `secret` or a
   * `jwks` of public keys). Default: none, every session may do everything.
   */
  auth?: AuthOptions;
  /** Browser Origins allowed to connect (exact; `*` any). Default: Origin is not checked. */
  allowOrigins?: string[];
  /** ms a disconnected session keeps its locks for a resume (the protocol's session grace). Default 0: off. */
  sessionGrace?: number;
  /** ms between WebSocket pings; a connection that missed the last one is cut. Default 10000; 0 disables. */
  heartbeatInterval?: number;
  /** Where the server logs; pino-compatible. Default silent. */
  logger?: Logger;
  /**
   * The Prometheus metrics `GET /metrics` serves. Default: new metrics of
   * this server alone. Pass one to share it with a Redis store's `observeScript`.
   */
  metrics?: LockMetrics;
  /**
   * ms between the start of `close()` and the closing of any connection:
   * `/healthz` answers 503 and upgrades are refused meanwhile, while open
   * sessions go on being served, so a load balancer can stop routing here
   * first. Default 0.
   */
  drainDelay?: number;
  /**
   * ms the closing of sessions and the store may take once the drain delay
   * is over; past it every remaining socket is cut and `close()` resolves
   * without waiting for the store. Default 10000.
   */
  shutdownTimeout?: number;
}

/** A running lockwire server. */
export interface LockServer {
  /** The WebSocket endpoint, e.g. `ws://127.0.0.1:7311/v1`. */
  readonly url: string;
  /** The HTTP base, e.g. `http://127.0.0.1:7311`. */
  readonly httpUrl: string;
  /** The port actually listened on. */
  readonly port: number;
  readonly store: LockStore;
  /** The metrics `GET /metrics` serves. */
  readonly metrics: LockMetrics;
  /**
   * Sessions currently connected. A connection the server is closing (for
   * abuse, expired credentials, a resume) has left this count already; it
   * counts against `maxConnections` until its socket is closed.
   */
  sessionCount(): number;
  /**
   * Drains and stops: `/healthz` turns 503 and new connections are refused
   * at once; after `drainDelay` it answers every pending request
   * `shutting_down`, closes every socket with 1001, ends the sessions in the
   * store, then closes the store, cutting whatever is left after
   * `shutdownTimeout`. Idempotent: every call returns the same promise.
   */
  close(): Promise<void>;
}

const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_PORT = 7311;
const DEFAULT_HEARTBEAT_MS = 10_000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

/** `lockwire/<version>`, the version read from this package's package.json. */
function serverName(): string {
  const pkg: unknown = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  const version =
    typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string'
      ? pkg.version
      : '0.0.0';
  return `lockwire/${version}`;
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * Starts a lockwire server: the WebSocket endpoint at `/v1` and the HTTP
 * endpoints on one `http.Server`. Resolves once listening; rejects when the
 * port cannot be bound (with the store closed); with a `StoreStartError`
 * when the store's `start` fails (close the store then: it may have failed
 * half way, with connections open); or, before the store starts, when an
 * option is invalid: a `RangeError` for a bad limit, or for a
 * `maxLocksPerSession`/`maxWaitersPerKey` other than a passed store's.
 */
export async function createLockServer(options: LockServerOptions = {}): Promise<LockServer> {
  const host = options.host ?? DEFAULT_HOST;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const limits = options.store
    ? limitsWithStore(resolveLimits(options.limits), options.limits ?? {}, options.store)
    : resolveLimits(options.limits);
  const heartbeatInterval = options.heartbeatInterval ?? DEFAULT_HEARTBEAT_MS;
  const drainDelay = options.drainDelay ?? 0;
  const shutdownTimeout = options.shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
  const metrics = options.metrics ?? createLockMetrics();
  const authenticator = createAuthenticator({
    clock,
    ...(options.auth ? { auth: options.auth } : {}),
    ...(options.allowOrigins ? { allowOrigins: options.allowOrigins } : {}),
  });
  const store =
    options.store ??
    createMemoryStore({
      clock,
      limits: { maxLocksPerSession: limits.maxLocksPerSession, maxWaitersPerKey: limits.maxWaitersPerKey },
    });
  const name = serverName();

  const sessions = new Map<SessionId, Session>();
  const sessionEndings = new Set<Promise<void>>();
  const closes = new ServerCloses();
  let closing = false;
  // Shutdown waits for every session's end in the store, with a connection or without.
  const trackEnding = (ending: Promise<void>) => {
    sessionEndings.add(ending);
    void ending.finally(() => sessionEndings.delete(ending));
  };
  const grace = new SessionGrace({
    grace: options.sessionGrace ?? 0,
    clock,
    store,
    logger,
    isClosing: () => closing,
    // Its grace over, or claimed by a resume while the server closed: ended as `Session.end()` ends one.
    endSession: (session, keys) => trackEnding(endSessionInStore({ store, metrics, logger }, session, keys)),
  });

  const { host: sessionHost, listener } = createSessionRouting({
    store,
    clock,
    logger,
    metrics,
    limits,
    grace,
    closes,
    sessions,
    trackEnding,
  });

  const welcome = (session: Session, secret: string | null, held: HeldLock[] | null): WelcomeMessage => {
    const announced: Limits = { ...limits };
    const message: WelcomeMessage & { user?: string } = {
      type: 'welcome',
      session: session.id,
      protocol: PROTOCOL_VERSION,
      server: name,
      limits: announced,
    };
    if (session.user !== null) message.user = session.user;
    return secret === null ? message : { ...message, ...grace.welcomeFields(secret, held) };
  };

  // Pings from peers are answered by their session, within its frame budget.
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxPayload,
    perMessageDeflate: false,
    autoPong: false,
    // A closing socket is cut after the close handshake's bound in real time too,
    // whatever the injected clock (ws's default is 30 s).
    closeTimeout: CLOSE_HANDSHAKE_MS,
  });
  const onConnection = (
    ws: WebSocket,
    req: IncomingMessage,
    permissions: Permissions,
    resumption: Resumption | null,
  ) => {
    if (closing) {
      if (resumption) grace.restore(resumption);
      closes.close(ws, 1001, 'server shutting down');
      return;
    }
    const secret = grace.enabled ? newResumeSecret() : null;
    // The resumed session becomes reachable for `lost` in this same step.
    const reopening = resumption ? grace.opened(resumption) : null;
    const session = new Session(resumption?.detached.session ?? nanoid(), ws, sessionHost, {
      permissions,
      resume: secret,
      resumedWith: resumption?.resumedWith ?? null,
      held: reopening?.held.map((lock) => lock.key) ?? [],
      socket: req.socket,
    });
    sessions.set(session.id, session);
    const remote = req.socket.remoteAddress;
    const opened = performance.now();
    logger.info({ session: session.id, remote, user: session.user, resumed: resumption !== null }, 'connection opened');
    // Registered after the session's own close handler, so `locksReleased` is known.
    ws.once('close', (code: number) => {
      const durationMs = Math.round(performance.now() - opened);
      const { closedBy, serverCode } = closes.closer(ws);
      logger.info(
        { session: session.id, remote, code, closedBy, serverCode, locksReleased: session.locksReleased, durationMs },
        'connection closed',
      );
    });
    session.greet(welcome(session, secret, reopening?.held ?? null));
    // What the session lost without a connection, with its reasons, before any other frame.
    for (const lost of reopening?.lost ?? []) session.pushLost(lost);
  };

  const httpGuard = guardHttp(authenticator, store, { isClosing: () => closing });
  const handleHttp = httpGuard.wrap(createHttpHandler({
    store,
    logger,
    metrics,
    maxKeyLength: limits.maxKeyLength,
    isClosing: () => closing,
    sessionCount: () => sessions.size,
    listLocks: httpGuard.listLocks,
  }));
  const serveHttp = (req: IncomingMessage, res: ServerResponse) => {
    // While closing, an answer ends its own connection: those begun after
    // the close began say `Connection: close`, and one begun before would
    // otherwise stay open after it for Node's keep-alive timeout. Only its
    // own: other idle keep-alive connections (a scraper's) stay open through
    // the drain delay, and are closed with the rest once it is over.
    res.once('finish', () => {
      if (closing) req.socket.end();
    });
    handleHttp(req, res);
  };
  const httpServer = createServer(serveHttp);
  httpServer.on(
    'upgrade',
    createUpgradeAdmission({
      wss,
      maxConnections: limits.maxConnections,
      authenticator,
      grace,
      logger,
      metrics,
      isClosing: () => closing,
      liveSession: (id) => sessions.get(id),
      connected: onConnection,
      serveHttp,
    }),
  );
  const httpConnections = watchHttpConnections(httpServer, logger);

  try {
    await store.start(listener);
  } catch (error) {
    throw new StoreStartError(error);
  }
  try {
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(options.port ?? DEFAULT_PORT, host, () => {
        httpServer.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await store.close();
    throw error;
  }
  httpServer.on('error', (error) => logger.error({ err: error }, 'http server error'));

  const heartbeat = heartbeatInterval > 0 ? startHeartbeat(heartbeatInterval, () => sessions.values()) : null;

  metrics.track({
    store: store.kind,
    connections: () => wss.clients.size,
    sessions: () => sessions.size,
    heldLocks: () => {
      // Sessions in grace hold their locks too.
      let held = grace.heldCount;
      for (const session of sessions.values()) held += session.heldCount;
      return held;
    },
    waiters: () => {
      let waiting = 0;
      for (const session of sessions.values()) waiting += session.waitingCount;
      return waiting;
    },
  });

  const port = (httpServer.address() as AddressInfo).port;
  const base = `${hostForUrl(host)}:${port}`;
  logger.info({ host, port, store: store.kind }, 'lockwire listening');

  const shutdown = () => {
    closing = true;
    return shutDownServer({
      clock,
      logger,
      drainDelay,
      shutdownTimeout,
      heartbeat,
      wss,
      closes,
      httpServer,
      httpConnections,
      sessions,
      grace,
      sessionEndings,
      store,
    });
  };
  let closed: Promise<void> | null = null;

  return {
    url: `ws://${base}${PROTOCOL_PATH}`,
    httpUrl: `http://${base}`,
    port,
    store,
    metrics,
    sessionCount: () => sessions.size,
    close: () => (closed ??= shutdown()),
  };
}
