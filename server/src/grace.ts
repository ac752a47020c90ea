import { CloseCode, type HeldLock } from '@lockwire/protocol';
import type { Clock } from './clock.js';
import { GraceRegistry, stillHeld, type DetachedSession, type GraceLosses } from './grace-registry.js';
import type { Logger } from './logger.js';
import type { LockStore, LostLock, SessionId } from './store.js';

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

/** Closes a connection with `code` and `reason`, cutting it if its peer does not complete the close handshake in time. */
export type CloseConnection = (code: number, reason: string) => void;

/** The live connection of a session, as a resume sees it. */
export interface ResumableSession {
  /** True when `secret` and `user` may resume it, and the session would keep its locks for a resume. */
  accepts(secret: string, user: string | null): boolean;
  /**
   * Takes the session off its connection for a resume: it stops being
   * served and goes into grace, keeping its locks, as on a disconnect. The
   * connection stays open until the resume is settled; the returned
   * function closes it then.
   */
  supersede(): CloseConnection;
}

/** A successful resume: the session and the locks it holds again. */
export interface Resumption {
  readonly detached: DetachedSession;
  /** The locks the store said the session held when the resume read them; see `SessionGrace.opened`. */
  readonly held: HeldLock[];
  /** When the session's grace would have ended (the clock's monotonic ms): kept if the new connection fails to open. */
  readonly deadline: number;
  /**
   * The locks the session lost since its connection dropped: during its
   * grace, and since the resume claimed it (recorded by `SessionGrace.lost`).
   */
  readonly losses: GraceLosses;
  /**
   * Closes the connection the resume took the session from, still open
   * (null when the session was in grace): with 4001 once the resumed
   * connection opens; otherwise (see `SessionGrace.restore`) with 1011 and
   * the session back in grace, for its client to resume it, or with 1001
   * when the server is closing.
   */
  readonly superseded: CloseConnection | null;
  /** The secret the resume presented: it works beside the new welcome's until the client is heard (see `acceptsSecret`). */
  readonly resumedWith: string;
}

/** What a resumed connection opens with: the welcome's `held`, then a `lost` for each of `lost`. */
export interface Reopening {
  readonly held: HeldLock[];
  /** Every lock the session lost while it had no connection, with its reason, in the order they were lost. */
  readonly lost: LostLock[];
}

/** What a `SessionGrace` needs from its server: the grace, the clock, the store, and how sessions end. */
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
   * there is one again, the loss is recorded here (as during the grace, in
   * the registry), to be sent once the connection opens and to leave the
   * lock out of `held`, which the resume may have read before the loss.
   */
  readonly #claimed = new Map<SessionId, Resumption>();
  /** Callers of `settled()` waiting for `#claimed` to empty. */
  readonly #settling: Array<() => void> = [];

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

  /**
   * Locks held by the sessions in grace (see `GraceRegistry.heldCount`) and
   * by those a resume claimed whose connection is not open yet; a lock lost
   * meanwhile stops counting at its loss.
   */
  get heldCount(): number {
    let held = this.#registry.heldCount;
    for (const resumption of this.#claimed.values()) held += stillHeld(resumption.detached.keys, resumption.losses).size;
    return held;
  }

  /** True when a session losing its connection now keeps its locks. */
  keepsLocks(): boolean {
    return this.enabled && !this.options.isClosing();
  }

  /** Starts the grace of a session whose connection is gone, with the losses it could not tell. */
  detached(detached: DetachedSession, cancelling: Promise<void>): void {
    this.#registry.hold(detached, cancelling, undefined, new Map(detached.losses));
  }

  /**
   * Resumes the session the request's `session` and `resume` parameters
   * name, for a connection whose credentials name `user`. A live
   * connection of it is taken over: the session leaves it for its grace
   * first, and the connection is closed with 4001 only once the resumed
   * one opens (see `Resumption.superseded`). Null (a fresh session) when
   * the parameters are missing or wrong, or the grace is over;
   * `'unavailable'` when the store cannot say what the session holds: the
   * session stays in its grace and the caller refuses the connection, so
   * its client tries again with the same secret rather than taking a fresh
   * session while the old one keeps its locks. The caller checks beforehand
   * that the server is not closing.
   */
  async resume(
    url: URL,
    user: string | null,
    live: (session: SessionId) => ResumableSession | undefined,
  ): Promise<Resumption | 'unavailable' | null> {
    if (!this.enabled) return null;
    const session = url.searchParams.get('session');
    const secret = url.searchParams.get('resume');
    if (session === null || secret === null) return null;
    const current = live(session);
    const superseded = current?.accepts(secret, user) ? current.supersede() : null;
    const claimed = this.#registry.claim(session, secret, user);
    if (!claimed) {
      // Its session ended instead of going into grace: nothing to resume.
      superseded?.(...this.#unresumed());
      return null;
    }
    // Reachable for `lost` from here on: the status reads below may come
    // before a loss, and its `lost` before the new connection.
    const resumption: Resumption = {
      detached: claimed.detached,
      held: [],
      deadline: claimed.deadline,
      losses: claimed.losses,
      superseded,
      resumedWith: secret,
    };
    this.#claimed.set(session, resumption);
    await claimed.cancelling;
    const held = await heldLocks(this.options.store, session, claimed.detached.keys).catch(() => null);
    if (held === null) {
      // The store cannot say what is held: the session stays in grace for
      // another try, until the grace's first deadline and no longer (or
      // ends at once if the server is closing meanwhile).
      this.restore(resumption);
      return 'unavailable';
    }
    return { ...resumption, held };
  }

  /**
   * A lock of a session without a connection was taken away (expired,
   * stolen, revoked): kept, with its reason, for the session's resume, which
   * leaves the lock out of its `held` and sends the `lost` after its
   * welcome. A session neither in grace nor claimed here has ended: nothing
   * is kept.
   */
  lost(session: SessionId, lost: LostLock): void {
    const claimed = this.#claimed.get(session);
    if (claimed) claimed.losses.set(lost.key, lost);
    else this.#registry.lost(session, lost);
  }

  /**
   * The resumed connection opens now: the caller makes the session
   * reachable for `lost` again in the same step, sends the welcome with
   * `held`, the truth (the locks the resume read, less those lost since),
   * then a `lost` for each of `lost` before anything else.
   */
  opened(resumption: Resumption): Reopening {
    this.#unclaim(resumption);
    resumption.superseded?.(CloseCode.Superseded, 'superseded by a resume');
    const lost = [...resumption.losses.values()];
    const held = resumption.held.filter((lock) => resumption.losses.get(lock.key)?.token !== lock.token);
    return { held, lost };
  }

  /**
   * Gives back a claimed session whose new connection failed before it
   * opened (or whose resume could not read the store): into grace until
   * its original deadline, or, once the server is closing, ended at once,
   * as a session that loses its connection then is. The connection it was
   * taken from, if still open, is closed with 1011 (its client resumes the
   * session), or 1001 when the server is closing.
   */
  restore(resumption: Resumption): void {
    this.#unclaim(resumption);
    const { detached, losses, deadline } = resumption;
    if (this.options.isClosing()) this.options.endSession(detached.session, stillHeld(detached.keys, losses));
    else this.#registry.hold(detached, Promise.resolve(), deadline, losses);
    resumption.superseded?.(...this.#unresumed());
  }

  /** The close of a connection whose session a resume took and could not open elsewhere. */
  #unresumed(): [code: number, reason: string] {
    if (this.options.isClosing()) return [CloseCode.GoingAway, 'server shutting down'];
    return [CloseCode.InternalError, 'the resume that took this session failed; resume it'];
  }

  /** The welcome's grace fields: `resume`, `grace`, `resumed`, and `held` (null: not resumed). */
  welcomeFields(secret: string, held: HeldLock[] | null) {
    return { resume: secret, grace: this.options.grace, resumed: held !== null, held: held ?? [] };
  }

  /**
   * Resolves once no session is claimed by a resume whose new connection
   * has not opened yet: each was opened or restored (during shutdown,
   * ended). Shutdown awaits it before the sessions' endings, which a
   * restore adds to. Never rejects; it waits as long as the resumes' store
   * reads take, so the caller bounds it.
   */
  settled(): Promise<void> {
    if (this.#claimed.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#settling.push(resolve));
  }

  #unclaim(resumption: Resumption): void {
    const session = resumption.detached.session;
    if (this.#claimed.get(session)?.losses === resumption.losses) this.#claimed.delete(session);
    // The waiters go on in a later microtask: after the synchronous rest of
    // `restore`, so a session it ends is among the endings they then await.
    if (this.#claimed.size === 0) for (const resolve of this.#settling.splice(0)) resolve();
  }

  /** Ends every session in grace (server shutdown). */
  drain(): void {
    for (const { session, keys } of this.#registry.drain()) this.options.endSession(session, keys);
  }
}
