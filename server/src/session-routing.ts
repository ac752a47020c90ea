import type { RequestId } from '@lockwire/protocol';
import type { Clock } from './clock.js';
import type { SessionGrace } from './grace.js';
import type { ServerLimits } from './limits.js';
import type { Logger } from './logger.js';
import type { ServerCloses } from './server-closes.js';
import type { LockMetrics } from './metrics.js';
import type { Session } from './session.js';
import type { SessionHost, Settlement } from './session-host.js';
import type { LockEvent, LockStore, SessionId, StoreListener, Ticket } from './store.js';
import { WriteTurns } from './write-turns.js';

/** What routing between the store and the sessions needs from the server. */
export interface SessionRoutingOptions {
  store: LockStore;
  clock: Clock;
  logger: Logger;
  metrics: LockMetrics;
  limits: ServerLimits;
  grace: SessionGrace;
  /** The closes the server starts. */
  closes: ServerCloses;
  /**
   * The connected sessions by id: the server adds each as its connection
   * opens; a session leaves once it ended or detached.
   */
  sessions: Map<SessionId, Session>;
  /** Called with each session's end in the store, which shutdown waits for. */
  trackEnding(ending: Promise<void>): void;
}

/** The two ends between the store and the connected sessions. */
export interface SessionRouting {
  /** What every session calls on the server. */
  readonly host: SessionHost;
  /**
   * What the store reports to: a settlement reaches the session of its
   * ticket; a loss reaches the connected session, else its grace.
   */
  readonly listener: StoreListener;
}

/**
 * Routes between the store and the sessions of one server: tickets name the
 * session and request a settlement answers, events are encoded once for all
 * their watchers, and a session that ends or detaches leaves `sessions`.
 */
export function createSessionRouting(options: SessionRoutingOptions): SessionRouting {
  const { store, clock, logger, metrics, limits, grace, closes, sessions, trackEnding } = options;
  const tickets = new Map<Ticket, { session: Session; id: RequestId }>();
  const eventTexts = new WeakMap<LockEvent, Buffer>();
  let nextTicket = 1;

  const host: SessionHost = {
    store,
    clock,
    logger,
    metrics,
    maxKeyLength: limits.maxKeyLength,
    limits,
    writeTurns: new WriteTurns(),
    closes,
    keepsLocks: () => grace.keepsLocks(),
    sessionDetached(session, detached, cancelling) {
      if (sessions.get(session.id) === session) sessions.delete(session.id);
      grace.detached(detached, cancelling);
      logger.debug({ session: session.id }, 'session detached; locks kept for its grace');
    },
    openTicket(session, id) {
      const ticket = nextTicket++;
      tickets.set(ticket, { session, id });
      return ticket;
    },
    closeTicket(ticket) {
      tickets.delete(ticket);
    },
    encodeEvent(event) {
      // Many watchers receive the same event object: serialise and encode
      // it to UTF-8 once; each watcher's socket is handed the same bytes.
      let bytes = eventTexts.get(event);
      if (bytes === undefined) {
        bytes = Buffer.from(JSON.stringify({ type: 'event', ...event }), 'utf8');
        eventTexts.set(event, bytes);
      }
      return bytes;
    },
    sessionEnded(session, ending) {
      if (sessions.get(session.id) === session) sessions.delete(session.id);
      trackEnding(ending);
      logger.debug({ session: session.id }, 'session ended');
    },
  };

  const settle = (ticket: Ticket, settlement: Settlement) => {
    const route = tickets.get(ticket);
    route?.session.settle(route.id, ticket, settlement);
  };
  const listener: StoreListener = {
    granted: (_session, ticket, grant) => settle(ticket, { kind: 'granted', grant }),
    acquireTimedOut: (_session, ticket) => settle(ticket, { kind: 'acquireTimedOut' }),
    waitDone: (_session, ticket, free) => settle(ticket, { kind: 'waitDone', free }),
    failed: (_session, ticket, error) => settle(ticket, { kind: 'failed', error }),
    lost: (session, lost) => {
      metrics.lost(lost.reason);
      // The grant this loss makes room for comes in the same store step.
      queueMicrotask(metrics.holdEnding(lost.key));
      logger.info({ key: lost.key, session, token: lost.token, reason: lost.reason }, 'lock lost');
      const live = sessions.get(session);
      if (live) live.pushLost(lost);
      else grace.lost(session, lost);
    },
  };

  return { host, listener };
}
