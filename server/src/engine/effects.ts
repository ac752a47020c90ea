import type { LockEventType } from '@lockwire/protocol';
import type { Grant, LockEvent, LostLock, SessionId, Ticket } from '../store.js';
import type { Hold, KeyEntry, Waiter } from './key-entry.js';

/**
 * One thing an engine step changed that someone outside must hear about.
 * Every step returns its effects in the order they happened; delivering them
 * in that order keeps the store's promises (a `lost` before the grant it made
 * room for, an event's counts matching what came before it).
 */
export type Effect =
  /** A lock this session held was taken away without its asking. */
  | { type: 'lost'; session: SessionId; lost: LostLock }
  /** A queued acquire was granted. */
  | { type: 'granted'; session: SessionId; ticket: Ticket; grant: Grant }
  /** A queued acquire's `acquireTimeout` passed. */
  | { type: 'acquireTimedOut'; session: SessionId; ticket: Ticket }
  /** A pending wait ended: `free` when its holds ended, false on timeout. */
  | { type: 'waitDone'; session: SessionId; ticket: Ticket; free: boolean }
  /** A state change of a key, for watchers. */
  | { type: 'event'; event: LockEvent };

/**
 * The event about a hold (`acquired`, `released`, `expired`, `stolen`,
 * `revoked`) with the entry's counts as they are now, so call it right after
 * the change it reports.
 */
export function holdEvent(entry: KeyEntry, event: LockEventType, hold: Hold, at: number): Effect {
  return {
    type: 'event',
    event: {
      key: entry.key,
      event,
      session: hold.session,
      token: hold.token,
      mode: hold.mode,
      meta: hold.meta,
      holders: entry.holderCount,
      waiters: entry.waiting,
      at,
    },
  };
}

/** The event about a queued request (`queued`, `dequeued`): no token. */
export function waiterEvent(entry: KeyEntry, event: LockEventType, waiter: Waiter, at: number): Effect {
  return {
    type: 'event',
    event: {
      key: entry.key,
      event,
      session: waiter.session,
      mode: waiter.mode,
      meta: waiter.meta,
      holders: entry.holderCount,
      waiters: entry.waiting,
      at,
    },
  };
}
