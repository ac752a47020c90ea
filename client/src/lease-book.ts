import type { AcquireResult, HeldLock, LockMode, LostReason } from '@lockwire/protocol';
import { ClientErrorCode, LeaseLostReason, LockError, type CloseInfo } from './errors.js';
import { Lease, type LeaseControl, type LeaseOwner } from './lease.js';

interface LeaseEntry {
  lease: Lease;
  control: LeaseControl;
}

/** How a hold of the key ended while an acquire of it was out: lost (with the server's reason), or released. */
type HoldEnd = LostReason | 'released';

/**
 * The holds of a key whose end a reply of an acquire could still name. The
 * ends of one flight are few (each is a hold of this session, which needs a
 * grant of its own); beyond this many the lowest tokens are dropped, and a
 * grant naming one of them takes the end of the highest.
 */
const MAX_ENDS_KEPT = 16;

/** The acquires of a key in flight, and the holds of the key that ended meanwhile, by token (made with the first). */
interface InFlight {
  calls: number;
  ended: Map<number, HoldEnd> | null;
}

/** The lease of a grant. */
export interface Grant {
  lease: Lease;
  /** False when the grant was a re-acquire of a lease this client already had. */
  fresh: boolean;
}

/**
 * The leases a client holds, by key, with the private controls that end
 * them. Every change of a lease's state goes through here, so the map and
 * the leases never disagree.
 */
export class LeaseBook {
  readonly #entries = new Map<string, LeaseEntry>();
  /**
   * Leases a resume did not give back, by key, until the server says why:
   * the `lost` of a lock the session lost without a connection comes after
   * the resumed welcome, before the answer to a ping (`settleUnconfirmed`).
   * Not in `snapshot()`: the server no longer holds them.
   */
  readonly #unconfirmed = new Map<string, LeaseEntry>();
  /**
   * The keys with an acquire in flight. A re-acquire is answered with the
   * token the session holds, and that reply can come after the end of the
   * very hold it names: its `lost` (the server ran the acquire, then the
   * lock was stolen before the reply went out), or the answer to this
   * client's own release of it. Tokens only grow per key, so a grant at or
   * below the token of a hold that ended names a hold that is gone. Kept
   * only while an acquire of the key is out, so it does not grow with the
   * keys a long-lived client has used.
   */
  readonly #inFlight = new Map<string, InFlight>();
  readonly #owner: LeaseOwner;

  constructor(owner: LeaseOwner) {
    this.#owner = owner;
  }

  /** The held leases, by key (a copy). */
  snapshot(): Map<string, Lease> {
    return new Map([...this.#entries].map(([key, entry]) => [key, entry.lease]));
  }

  /**
   * An acquire of `key` is about to be sent: until the returned function is
   * called (once its call settled, after its reply was adopted), the end of
   * a hold of the key (`lost`, or its release answered) is remembered for
   * `adopt()`.
   */
  acquiring(key: string): () => void {
    // No map of ends until a hold ends: an acquire is on the client's hot path, an end mid-flight is rare.
    const flight = this.#inFlight.get(key) ?? { calls: 0, ended: null };
    flight.calls += 1;
    this.#inFlight.set(key, flight);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      flight.calls -= 1;
      if (flight.calls === 0 && this.#inFlight.get(key) === flight) this.#inFlight.delete(key);
    };
  }

  /**
   * Makes (or finds) the lease of a grant; runs while the reply frame is
   * handled, before any later push. A grant of a hold that is already gone
   * makes a lease that has ended already, since nothing later would end it:
   * one whose hold ended while the acquire was out (its token at or below
   * that of the hold that ended) is lost with its own hold's reason (else
   * with that of the newest hold that ended), or `released` when that hold
   * was released; one older than the lease the book holds of the key is
   * `released` unless its loss was reported. Such a grant leaves the book
   * as it is.
   */
  adopt(key: string, mode: LockMode, grant: Extract<AcquireResult, { acquired: true }>): Grant {
    const existing = this.#entries.get(key);
    if (existing?.lease.held && existing.lease.token === grant.token) return { lease: existing.lease, fresh: false };
    let control: LeaseControl | undefined;
    const init = { key, mode, token: grant.token, expiresAt: grant.expiresAt };
    const lease = new Lease(init, this.#owner, (c) => {
      control = c;
    });
    if (!control) throw new LockError(ClientErrorCode.ProtocolError, 'lease created without control');
    const end = this.#endOf(key, grant.token, existing);
    if (end === undefined) {
      this.#entries.set(key, { lease, control });
    } else if (end === 'released') {
      control.markReleased();
    } else {
      control.lose(end);
    }
    return { lease, fresh: true };
  }

  /** How the hold a grant of `token` names has ended already; `undefined` while the session may still hold it. */
  #endOf(key: string, token: number, existing: LeaseEntry | undefined): HoldEnd | undefined {
    const ended = this.#inFlight.get(key)?.ended;
    const own = ended?.get(token);
    if (own !== undefined) return own;
    // Tokens only grow: a newer hold of the key stands, so the hold this grant names ended before it.
    if (existing?.lease.held && token < existing.lease.token) return 'released';
    const newest = ended && ended.size > 0 ? Math.max(...ended.keys()) : undefined;
    return newest !== undefined && token <= newest ? ended?.get(newest) : undefined;
  }

  /** Remembers, while an acquire of `key` is out, that its hold `token` ended so. */
  #ended(key: string, token: number, end: HoldEnd): void {
    const flight = this.#inFlight.get(key);
    if (!flight) return;
    const ended = (flight.ended ??= new Map());
    // A release answered `not_holder` forgets the lease too: the `lost` of that hold names its real end.
    if (end === 'released' && ended.has(token)) return;
    ended.set(token, end);
    if (ended.size > MAX_ENDS_KEPT) ended.delete(Math.min(...ended.keys()));
  }

  /** True while `lease` is the book's lease of its key (held, or kept for a resume to confirm). */
  stands(lease: Lease): boolean {
    return this.#entries.get(lease.key)?.lease === lease || this.#unconfirmed.get(lease.key)?.lease === lease;
  }

  /** Drops `lease` from the book (its own release was answered, or its connection is gone). */
  forget(lease: Lease): void {
    if (lease.held) this.#ended(lease.key, lease.token, 'released');
    if (this.#entries.get(lease.key)?.lease === lease) this.#entries.delete(lease.key);
    if (this.#unconfirmed.get(lease.key)?.lease === lease) this.#unconfirmed.delete(lease.key);
  }

  /** Records a successful extend of `lease`. */
  extended(lease: Lease, expiresAt: number | null): void {
    const entry = this.#entries.get(lease.key);
    if (entry?.lease === lease) entry.control.setExpiresAt(expiresAt);
  }

  /** `key` was released through the client (not through its lease): its lease turns `released`, and says so. */
  released(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#ended(key, entry.lease.token, 'released');
    this.#entries.delete(key);
    entry.control.markReleased();
  }

  /**
   * The server took `key` away: the lease with that token (held, or not
   * given back by a resume) is lost. While an acquire of the key is out,
   * the token and reason are kept for the grant it may bring (see `adopt()`).
   */
  lost(key: string, token: number, reason: LostReason): void {
    this.#ended(key, token, reason);
    for (const entries of [this.#entries, this.#unconfirmed]) {
      const entry = entries.get(key);
      if (!entry || entry.lease.token !== token) continue;
      entries.delete(key);
      entry.control.lose(reason);
    }
  }

  /** The connection ended without a resume: every lease is lost with `connection_lost`. */
  loseAll(close: CloseInfo | undefined): void {
    const entries = [...this.#entries.values(), ...this.#unconfirmed.values()];
    this.#entries.clear();
    this.#unconfirmed.clear();
    for (const entry of entries) entry.control.lose(LeaseLostReason.ConnectionLost, close);
  }

  /**
   * The server has told every reason it had (its answer to the ping after
   * the resume came, or the connection ended first): the leases the resume
   * did not give back and no `lost` named are lost with `connection_lost`.
   */
  settleUnconfirmed(close: CloseInfo | undefined): void {
    const entries = [...this.#unconfirmed.values()];
    this.#unconfirmed.clear();
    for (const entry of entries) entry.control.lose(LeaseLostReason.ConnectionLost, close);
  }

  /**
   * The keys of `kept` (the holds a resume gave back) that no lease stands
   * for: released while offline, granted in a reply that was lost, or held
   * under another token than the lease's (a newer grant whose reply was
   * lost). The caller releases them, before `reconcile()`.
   */
  orphans(kept: Map<string, HeldLock>): string[] {
    return [...kept.values()]
      .filter((hold) => this.#entries.get(hold.key)?.lease.token !== hold.token)
      .map((hold) => hold.key);
  }

  /**
   * A reconnect gave back `kept` (empty when it did not resume): leases whose
   * key is listed with their own token stay held. The others are lost with
   * `connection_lost`, or, when `resumed`, wait for the `lost` the server
   * sends for each lock the session lost without a connection, which names
   * the real reason, until `settleUnconfirmed()`. Returns how many wait.
   */
  reconcile(kept: Map<string, HeldLock>, close: CloseInfo | undefined, resumed: boolean): number {
    // Those of an earlier resume that were never settled have nothing more coming.
    this.settleUnconfirmed(close);
    for (const [key, entry] of [...this.#entries]) {
      const hold = kept.get(key);
      if (hold?.token === entry.lease.token) {
        entry.control.setExpiresAt(hold.expiresAt);
        continue;
      }
      this.#entries.delete(key);
      if (resumed) this.#unconfirmed.set(key, entry);
      else entry.control.lose(LeaseLostReason.ConnectionLost, close);
    }
    return this.#unconfirmed.size;
  }
}
