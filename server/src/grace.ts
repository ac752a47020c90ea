import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { HeldLock } from '@lockwire/protocol';
import type { Clock, TimerHandle } from './clock.js';
import type { Logger } from './logger.js';
import type { LockStore, LostLock, SessionId } from './store.js';

/** A session between its disconnect and the end of its grace: its locks are still held. */
export interface DetachedSession {
  readonly session: SessionId;
  /** The resume secret of the session's last welcome. */
  readonly secret: string;
  /** The credentials' `sub` the session was opened with (null without one): a resume must match it. */
  readonly user: string | null;
  /** Keys the session believed it held; `heldLocks` checks each against the store. */
  readonly keys: ReadonlySet<string>;
}

export interface GraceRegistryOptions {
  /** ms a detached session's locks stay held. */
  grace: number;
  clock: Clock;
  /** Called when a session's grace ran out unclaimed: end it in the store; `keys` are the locks it held. */
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
 * The sessions in grace, each with a timer on the injected clock. A resume
 * claims one (the secret and user must match); an unclaimed one ends when
 * its timer fires.
 */
export class GraceRegistry {
  readonly #entries = new Map<
    SessionId,
    { detached: DetachedSession; timer: TimerHandle; cancelling: Promise<void>; deadline: number }
  >();

  constructor(private readonly options: GraceRegistryOptions) {}

  /** Sessions in grace now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Locks the sessions in grace hold: the keys each believed it held, so a
   * lock lost during the grace counts until the grace ends or is claimed.
   */
  get heldCount(): number {
    let held = 0;
    for (const entry of this.#entries.values()) held += entry.detached.keys.size;
    return held;
  }

  /**
   * Starts the grace of a session that lost its connection; `cancelling`
   * settles when its pending requests have left their queues. `deadline`
   * (epoch ms on the clock) is when the grace ends: default `grace` from
   * now; a claimed session put back (its resume failed) passes the deadline
   * it was claimed with, so a failed resume never lengthens the grace. A
   * deadline already past ends the session at once.
   */
  hold(
    detached: DetachedSession,
    cancelling: Promise<void> = Promise.resolve(),
    deadline: number = this.options.clock.now() + this.options.grace,
  ): void {
    this.#drop(detached.session);
    const left = deadline - this.options.clock.now();
    if (left <= 0) {
      this.options.expired(detached.session, detached.keys);
      return;
    }
    const timer = this.options.clock.setTimeout(() => {
      if (this.#entries.get(detached.session)?.detached !== detached) return;
      this.#entries.delete(detached.session);
      this.options.expired(detached.session, detached.keys);
    }, left);
    this.#entries.set(detached.session, { detached, timer, cancelling, deadline });
  }

  /**
   * Takes a session out of grace for a resume: null (and the session stays
   * in grace) when it is unknown, its grace is over, or the secret or user
   * does not match. `deadline` is when its grace would have ended, for
   * `hold` should the resume fail.
   */
  claim(
    session: SessionId,
    secret: string,
    user: string | null,
  ): { detached: DetachedSession; cancelling: Promise<void>; deadline: number } | null {
    const entry = this.#entries.get(session);
    if (!entry || !sameSecret(secret, entry.detached.secret) || entry.detached.user !== user) return null;
    this.#drop(session);
    return { detached: entry.detached, cancelling: entry.cancelling, deadline: entry.deadline };
  }

  /** Ends every grace at once (server shutdown): returns the sessions to end in the store. */
  drain(): DetachedSession[] {
    const sessions = [...this.#entries.values()].map((entry) => entry.detached);
    for (const detached of sessions) this.#drop(detached.session);
    return sessions;
  }

  #drop(session: SessionId): void {
    const entry = this.#entries.get(session);
    if (!entry) return;
    this.options.clock.clearTimeout(entry.timer);
    this.#entries.delete(session);
  }
}

/**
 * The locks `session` holds among `keys`, as the store says now, in key
 * order: the `held` of a resumed welcome. Keys the session no longer holds
 * (expired, stolen or revoked during grace) are left out.
 */
export async function heldLocks(store: LockStore, session: SessionId, keys: Iterable<string>): Promise<HeldLock[]> {
  const statuses = await Promise.all([...keys].map((key) => store.status(key, session)));
  const held: HeldLock[] = [];
  for (const status of statuses) {
    const mine = status.holders.find((holder) => holder.session === session);
    if (mine) held.push({ key: status.key, mode: mine.mode, token: mine.token, expiresAt: mine.expiresAt });
  }
  return held.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The live connection of a session, as a resume sees it. */
export interface ResumableSession {
  /** True when `secret` and `user` may resume it. */
  accepts(secret: string, user: string | null): boolean;
  /** Closes the connection with 4001; the session goes into grace, keeping its locks. */
  supersede(): void;
}

/** A successful resume: the session and the locks it holds again. */
export interface Resumption {
  readonly detached: DetachedSession;
  /** The locks the store said the session held when the resume read them; see `SessionGrace.opened`. */
  readonly held: HeldLock[];
  /** When the session's grace would have ended (clock epoch ms): kept if the new connection fails to open. */
  readonly deadline: number;
  /** The locks (`lossKey`) the session lost since the resume claimed it, recorded by `SessionGrace.lost`. */
  readonly losses: Set<string>;
}

function lossKey(key: string, token: number): string {
  return `${token} ${key}`;
}

export interface SessionGraceOptions {
  /** ms of grace; 0 turns session grace off. */
  grace: number;
  clock: Clock;
  store: LockStore;
  logger: Logger;
  /** True once the server is closing: sessions then end at once. */
  isClosing(): boolean;
  /**
   * Ends a session in the store (grace over or server closing); `keys` are
   * the locks it held, whose next waiters the end grants.
   */
  endSession(session: SessionId, keys: Iterable<string>): void;
}

/**
 * The session grace of one server (the protocol's resume): a session that
 * loses its connection keeps its locks for `grace` ms, and a connection to
 * `/v1?session=<id>&resume=<secret>` within that time takes it over.
 */
export class SessionGrace {
  readonly #registry: GraceRegistry;
  /**
   * Sessions a resume has taken out of grace whose new connection is not
   * open yet. The server routes a session's `lost` to its connection; until
   * there is one again, the loss is recorded here, or it would be dropped
   * while `held` (read from the store before it) still lists the lock.
   */
  readonly #claimed = new Map<SessionId, Resumption>();

  constructor(private readonly options: SessionGraceOptions) {
    this.#registry = new GraceRegistry({
      grace: options.grace,
      clock: options.clock,
      expired: (session, keys) => {
        options.logger.info({ session }, 'session grace over; releasing its locks');
        options.endSession(session, keys);
      },
    });
  }

  /** True when session grace is on. */
  get enabled(): boolean {
    return this.options.grace > 0;
  }

  /** Sessions in grace now. */
  get size(): number {
    return this.#registry.size;
  }

  /** Locks held by the sessions in grace (see `GraceRegistry.heldCount`). */
  get heldCount(): number {
    return this.#registry.heldCount;
  }

  /** True when a session losing its connection now keeps its locks. */
  keepsLocks(): boolean {
    return this.enabled && !this.options.isClosing();
  }

  /** Starts the grace of a session whose connection is gone. */
  detached(detached: DetachedSession, cancelling: Promise<void>): void {
    this.#registry.hold(detached, cancelling);
  }

  /**
   * Resumes the session the request's `session` and `resume` parameters
   * name, for a connection whose credentials name `user`: a live
   * connection of it is superseded first. Null (a fresh session) when the
   * parameters are missing or wrong, or the grace is over.
   */
  async resume(url: URL, user: string | null, live: (session: SessionId) => ResumableSession | undefined): Promise<Resumption | null> {
    if (!this.enabled) return null;
    const session = url.searchParams.get('session');
    const secret = url.searchParams.get('resume');
    if (session === null || secret === null) return null;
    const current = live(session);
    if (current?.accepts(secret, user)) current.supersede();
    const claimed = this.#registry.claim(session, secret, user);
    if (!claimed) return null;
    // Reachable for `lost` from here on: the status reads below may come
    // before a loss, and its `lost` before the new connection.
    const resumption: Resumption = { detached: claimed.detached, held: [], deadline: claimed.deadline, losses: new Set() };
    this.#claimed.set(session, resumption);
    await claimed.cancelling;
    const held = await heldLocks(this.options.store, session, claimed.detached.keys).catch(() => null);
    if (held === null) {
      // The store cannot say what is held: the session stays in grace for
      // another try, until the grace's first deadline and no longer.
      this.#unclaim(resumption);
      this.#registry.hold(claimed.detached, Promise.resolve(), claimed.deadline);
      return null;
    }
    return { ...resumption, held };
  }

  /**
   * A lock of a session without a connection was taken away (expired,
   * stolen, revoked). A resume of it in progress leaves the lock out of its
   * `held`; a session in grace has no one to tell, its resume reads the store.
   */
  lost(session: SessionId, lost: LostLock): void {
    this.#claimed.get(session)?.losses.add(lossKey(lost.key, lost.token));
  }

  /**
   * The resumed connection opens now: the caller makes the session
   * reachable for `lost` again in the same step. Returns the welcome's
   * `held`, the truth: the locks the resume read, less those lost since.
   */
  opened(resumption: Resumption): HeldLock[] {
    this.#unclaim(resumption);
    return resumption.held.filter((lock) => !resumption.losses.has(lossKey(lock.key, lock.token)));
  }

  /**
   * Gives back a claimed session whose new connection failed before it
   * opened: into grace until its original deadline, or, once the server is
   * closing, ended at once.
   */
  restore(resumption: Resumption): void {
    this.#unclaim(resumption);
    if (this.options.isClosing()) this.options.endSession(resumption.detached.session, resumption.detached.keys);
    else this.#registry.hold(resumption.detached, Promise.resolve(), resumption.deadline);
  }

  /** The welcome's grace fields: `resume`, `grace`, `resumed`, and `held` (null: not resumed). */
  welcomeFields(secret: string, held: HeldLock[] | null) {
    return { resume: secret, grace: this.options.grace, resumed: held !== null, held: held ?? [] };
  }

  #unclaim(resumption: Resumption): void {
    const session = resumption.detached.session;
    if (this.#claimed.get(session)?.losses === resumption.losses) this.#claimed.delete(session);
  }

  /** Ends every session in grace (server shutdown). */
  drain(): void {
    for (const detached of this.#registry.drain()) this.options.endSession(detached.session, detached.keys);
  }
}
