/**
 * How `client.locks` hands a name's server hold back: the last holder of
 * the name here to end releases it, and while the client lets go of a hold
 * of the name in the background (its own release the server refused, sent
 * again; another hold of the key, see `HoldReleases`) the name's requests
 * wait for that hold to be gone.
 */
import type { HoldReleases } from './hold-release.js';
import type { SharedHoldSharing } from './web-lock-sharing.js';
import { nextChange, setIdle, type Holder, type NameState } from './web-lock-state.js';

/** What the hand-back needs from the local queue. */
export interface HandBackHost {
  /** The client's holds let go of in the background: its acquires of a name wait while the name's is let go of. */
  readonly releases: HoldReleases;
  /** Whether a request waits behind the server queue, which a holder ending may let it leave. */
  readonly sharing: Pick<SharedHoldSharing, 'waitsBehindServerQueue' | 'holderEnded'>;
  /** Grants what can be granted for the name now. */
  process(name: string): void;
}

/** Releases the server hold of a name once this client's holders of it are done (see `WebLockQueue`). */
export class HoldHandBack {
  readonly #host: HandBackHost;

  constructor(host: HandBackHost) {
    this.#host = host;
  }

  /**
   * A holder's callback settled: the last holder of the name releases the
   * server hold. Resolves once the server answered the release; a refused
   * release is asked again in the background (see `releaseHold`), and the
   * name stays busy until the hold is gone, so this client's next request
   * for it goes to the server only then (as does any acquire of the key,
   * see `HoldReleases`; requests of other names are not
   * held back meanwhile, see `#releaseRefused`). While a check whether a request may
   * share the hold is in flight, the hold waits for its decision.
   *
   * While a steal of this client asks the server whether it may take the
   * name, the holder still holds the lock until that is decided: resolves
   * with the loss when the steal then robbed it (made before the holder
   * ended, as in a browser, where the steal would have taken the lock first).
   */
  async release(name: string, state: NameState, holder: Holder): Promise<{ reason: unknown } | undefined> {
    if (!state.held.has(holder)) return undefined;
    while (state.stealing && state.held.has(holder)) await state.stealing;
    if (!state.held.delete(holder)) return holder.loss;
    if (state.held.size === 0 && state.checking) {
      // A check of the server queue may yet share the hold with a request made before this holder ended, which in
      // a browser would hold the lock already: the hold stays until the check decided.
      state.busy = true;
      while (state.checking) await nextChange(state);
      setIdle(state);
      if (state.held.size > 0) {
        this.#host.process(name);
        return undefined;
      }
    }
    if (state.held.size > 0) {
      // A holder ended while a request waits behind the server queue: an unwatched queue is asked again.
      if (this.#host.sharing.waitsBehindServerQueue(state)) this.#host.sharing.holderEnded(name, state);
      return undefined;
    }
    const lease = state.lease;
    state.lease = null;
    if (!lease) {
      this.#host.process(name);
      return undefined;
    }
    state.busy = true;
    const refused = await this.#host.releases.release(lease, () => this.#afterRelease(name, state));
    // Still held: the release goes on in the background, for as long as the server keeps refusing it.
    if (refused && lease.held && state.busy) this.#releaseRefused(name, state);
    return undefined;
  }

  /**
   * The server refused the release of the name's hold, and it is sent again
   * until the hold is gone: the name's waiting requests wait for that (see
   * `#letGo`).
   */
  #releaseRefused(name: string, state: NameState): void {
    this.#letGo(state);
    this.#host.process(name);
  }

  /**
   * While the client lets go of a hold of the name in the background that
   * is not a Web Lock's (a refused `withLock` release asked again, the late
   * grant of an aborted request), the session still holds the key, and an
   * acquire of it would wait for that (see `LockClient.acquire`): the name
   * waits here instead, as for its own refused release. False when no such
   * hold is let go of.
   */
  awaitLetGo(name: string, state: NameState): boolean {
    const letGo = this.#host.releases.pending(name);
    if (!letGo) return false;
    state.busy = true;
    this.#letGo(state);
    void letGo.then(() => this.#afterRelease(name, state));
    return true;
  }

  /**
   * A hold of the name is let go of in the background, which may take
   * seconds (while the server refuses its release): the name's waiting
   * requests wait for it, and no longer hold requests of other names back;
   * its `ifAvailable` ones answer `null` (the session still holds the lock).
   */
  #letGo(state: NameState): void {
    state.lettingGo = true;
    for (const waiter of state.queue) if (!waiter.ifAvailable) waiter.blocked = true;
  }

  /** The name's server hold is gone: its next request may ask the server. */
  #afterRelease(name: string, state: NameState): void {
    state.lettingGo = false;
    setIdle(state);
    this.#host.process(name);
  }
}
