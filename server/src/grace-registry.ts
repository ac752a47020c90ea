import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock, TimerHandle } from './clock.js';
import type { LostLock, SessionId } from './store.js';

/** A session between its disconnect and the end of its grace: its locks are still held. */
export interface DetachedSession {
  readonly session: SessionId;
  /** The resume secret of the session's last welcome. */
  readonly secret: string;
  /**
   * The secret the resume that opened the session's last connection
   * presented, while nothing came from its client on that connection: the
   * client may never have read the welcome that replaced it (see
   * `acceptsSecret`). Null or absent once it was heard there, or for a fresh
   * session.
   */
  readonly resumedWith?: string | null;
  /** The credentials' `sub` the session was opened with (null without one): a resume must match it. */
  readonly user: string | null;
  /**
   * Keys the session may hold, kept current by its store calls that were in
   * flight when it detached (a release takes its key out, a grant adds one);
   * `heldLocks` checks each against the store.
   */
  readonly keys: ReadonlySet<string>;
  /**
   * Locks the session lost while its connection was closing, by key: they
   * could not be told on it, so its resume tells them.
   */
  readonly losses?: ReadonlyMap<string, LostLock>;
}

/**
 * The locks a session lost while it had no connection, by key, for its
 * resume to report. A session holds a key at most once and acquires nothing
 * while it has no connection, so there is at most one loss per key it held
 * or was acquiring when it dropped: never more than `maxLocksPerSession`.
 */
export type GraceLosses = Map<string, LostLock>;

/** `keys` less those `losses` names: the locks a session in grace still holds. */
export function stillHeld(keys: ReadonlySet<string>, losses: GraceLosses): Set<string> {
  const held = new Set(keys);
  for (const key of losses.keys()) held.delete(key);
  return held;
}

/** What a `GraceRegistry` needs: the grace, the clock its timers run on, and what ends a session whose grace ran out. */
export interface GraceRegistryOptions {
  /** ms a detached session's locks stay held. */
  grace: number;
  clock: Clock;
  /** Called when a session's grace ran out unclaimed: end it in the store; `keys` are the locks it still held. */
  expired(session: SessionId, keys: ReadonlySet<string>): void;
}

/** A fresh resume secret: 192 random bits, base64url. */
export function newResumeSecret(): string {
  return randomBytes(24).toString('base64url');
}

/** Compares two secrets in time independent of where they differ (and of their lengths). */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * True when `given` resumes a session whose last welcome carried `secret`
 * and whose last resume presented `resumedWith` (see `DetachedSession`).
 *
 * Each welcome carries a new secret, and a secret works once: a secret read
 * from an old URL cannot take the session back. But a resumed connection
 * may drop before its welcome reaches the client (the path fails again, or
 * the client gave up waiting for it), and the client then holds only the
 * secret it resumed with. So that secret works beside the new one until
 * the client sends anything on the resumed connection, which it does only
 * after reading its welcome.
 */
export function acceptsSecret(given: string, secret: string, resumedWith: string | null): boolean {
  return sameSecret(given, secret) || (resumedWith !== null && sameSecret(given, resumedWith));
}

/**
 * The sessions in grace, each with a timer on the injected clock. A resume
 * claims one (the secret and user must match); an unclaimed one ends when
 * its timer fires.
 */
export class GraceRegistry {
  readonly #entries = new Map<
    SessionId,
    { detached: DetachedSession; losses: GraceLosses; timer: TimerHandle; cancelling: Promise<void>; deadline: number }
  >();

  constructor(private readonly options: GraceRegistryOptions) {}

  /** Sessions in grace now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Locks the sessions in grace hold: the keys each believed it held, less
   * those it lost since (a lost lock stops counting at its loss).
   */
  get heldCount(): number {
    let held = 0;
    for (const entry of this.#entries.values()) held += stillHeld(entry.detached.keys, entry.losses).size;
    return held;
  }

  /**
   * A lock of a session in grace was taken away: kept for its resume. False
   * when the session is not in grace here.
   */
  lost(session: SessionId, lost: LostLock): boolean {
    const entry = this.#entries.get(session);
    if (!entry) return false;
    entry.losses.set(lost.key, lost);
    return true;
  }

  /**
   * Starts the grace of a session that lost its connection; `cancelling`
   * settles when its pending requests have left their queues. `deadline`
   * (ms on the clock's monotonic reading, so that a step of the wall clock
   * neither shortens nor lengthens a grace) is when the grace ends:
   * default `grace` from now; a claimed session put back (its resume failed)
   * passes the deadline it was claimed with, so a failed resume never
   * lengthens the grace, and the `losses` recorded so far. A deadline
   * already past ends the session at once.
   */
  hold(
    detached: DetachedSession,
    cancelling: Promise<void> = Promise.resolve(),
    deadline: number = this.options.clock.monotonic() + this.options.grace,
    losses: GraceLosses = new Map(),
  ): void {
    this.#drop(detached.session);
    const left = deadline - this.options.clock.monotonic();
    if (left <= 0) {
      this.options.expired(detached.session, stillHeld(detached.keys, losses));
      return;
    }
    const timer = this.options.clock.setTimeout(() => {
      if (this.#entries.get(detached.session)?.detached !== detached) return;
      this.#entries.delete(detached.session);
      this.options.expired(detached.session, stillHeld(detached.keys, losses));
    }, left);
    this.#entries.set(detached.session, { detached, losses, timer, cancelling, deadline });
  }

  /**
   * Takes a session out of grace for a resume: null (and the session stays
   * in grace) when it is unknown, its grace is over, or the secret or user
   * does not match. `deadline` is when its grace would have ended, for
   * `hold` should the resume fail; `losses` the locks it lost meanwhile.
   */
  claim(
    session: SessionId,
    secret: string,
    user: string | null,
  ): { detached: DetachedSession; losses: GraceLosses; cancelling: Promise<void>; deadline: number } | null {
    const entry = this.#entries.get(session);
    if (!entry || entry.detached.user !== user) return null;
    const { detached } = entry;
    if (!acceptsSecret(secret, detached.secret, detached.resumedWith ?? null)) return null;
    this.#drop(session);
    return { detached: entry.detached, losses: entry.losses, cancelling: entry.cancelling, deadline: entry.deadline };
  }

  /**
   * Ends every grace at once (server shutdown): returns the sessions to end
   * in the store, each with the keys it still held.
   */
  drain(): Array<{ session: SessionId; keys: Set<string> }> {
    const entries = [...this.#entries.values()];
    for (const entry of entries) this.#drop(entry.detached.session);
    return entries.map((entry) => ({ session: entry.detached.session, keys: stillHeld(entry.detached.keys, entry.losses) }));
  }

  #drop(session: SessionId): void {
    const entry = this.#entries.get(session);
    if (!entry) return;
    this.options.clock.clearTimeout(entry.timer);
    this.#entries.delete(session);
  }
}
