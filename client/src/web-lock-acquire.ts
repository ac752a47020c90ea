/**
 * How the local queue of `client.locks` gets a name its server hold: the
 * acquire for the head of the name's queue, and a steal (`steal: true`),
 * which hands the session's own hold back, breaks every holder here and
 * takes the lock from everyone else. A grant becomes the name's hold, whose
 * loss breaks every holder of it.
 */
import type { LockMode } from '@lockwire/protocol';
import { LockError } from './errors.js';
import type { Lease } from './lease.js';
import {
  breakHolders,
  dequeue,
  holderLossReason,
  holdFor,
  lostWithConnection,
  nextChange,
  setIdle,
  wake,
  type Holder,
  type NameState,
  type ServerAcquire,
  type Waiter,
  type WebLockServerCalls,
} from './web-lock-state.js';

/** What the server calls need from the local queue. */
export interface AcquiresHost extends Pick<WebLockServerCalls, 'acquire'> {
  /** Grants what can be granted for the name now. */
  process(name: string): void;
  /** Hands granted requests to their callers, in request order. */
  deliver(): void;
  /** The connection dropped and the client reconnects (it is not closed for good). */
  reconnecting(): boolean;
}

/** The server calls of one client's local queue that get a name its hold (see `WebLockQueue`). */
export class WebLockAcquires {
  readonly #host: AcquiresHost;

  constructor(host: AcquiresHost) {
    this.#host = host;
  }

  /**
   * Sends the acquire for `first`, the head of the name's local queue; the
   * name is busy until the server answered. The answer goes to the request
   * the acquire is for by then (an aborted one may hand it on, see
   * `handOver`): a grant becomes the name's hold and that request's holder;
   * no grant answers an `ifAvailable` request `null` and fails any other
   * with `not_acquired`; a failure fails it, unless a steal cancelled the
   * acquire (the request then keeps its place and asks again later), or the
   * connection dropped and the client reconnects: the request then keeps
   * its place here and is sent again once the client is open again (see
   * `Waiter.resend`), at the back of the server queue, which dropped it with
   * the connection. Once the server queued the acquire, later requests need
   * not wait for it.
   */
  acquireFor(name: string, state: NameState, first: Waiter): void {
    state.busy = true;
    first.inFlight = true;
    first.serverQueued = false;
    first.resend = false;
    // The request this acquire is for: an aborted one may hand it on (see `handOver`).
    const acquire: ServerAcquire = { waiter: first };
    state.acquire = acquire;
    const onQueued = () => {
      const head = acquire.waiter;
      head.serverQueued = true;
      head.blocked = true;
      // A steal waiting for this acquire's fate may now cancel it; later requests need not wait for it.
      wake(state);
      this.#host.deliver();
    };
    // An ifAvailable request is granted only if the server can grant it at once.
    const wait = first.ifAvailable ? { acquireTimeout: 0 } : {};
    // Only an `ifAvailable` request is sent while reconnecting, to fail at once: it wants an answer now.
    const offline = this.#host.reconnecting();
    this.#host.acquire(name, { mode: first.mode, signal: first.controller.signal, onQueued, ...wait }).then(
      (lease) => {
        const head = acquire.waiter;
        state.acquire = undefined;
        head.inFlight = false;
        dequeue(state, head);
        setIdle(state);
        if (lease) head.holder = this.#adopt(name, state, lease, head.mode);
        else if (head.ifAvailable) head.holder = null;
        else head.fail(new LockError('not_acquired', `lock ${JSON.stringify(name)} was not granted`));
        this.#host.process(name);
      },
      (error: unknown) => {
        const head = acquire.waiter;
        state.acquire = undefined;
        head.inFlight = false;
        head.serverQueued = false;
        const abandoned = head.abandoned;
        if (head.requeue && !abandoned) {
          // A steal cancelled this acquire; the request keeps its place and asks again later.
          head.requeue = false;
          head.controller = new AbortController();
        } else if (!abandoned && !offline && lostWithConnection(error) && this.#host.reconnecting()) {
          // The server dropped the request (or a grant whose reply was lost) with the connection. Sent again only
          // after the reconnect: a resumed session's queued requests have left their queues by then, so the server
          // takes it as the session's one request for the key, and a hold it kept for a lost grant was given
          // back in the welcome and released before (no lease stands for it, see `settleLeases`).
          head.resend = true;
          head.controller = new AbortController();
        } else {
          // The caller's abort may have come after a steal had already cancelled the acquire with its own reason.
          dequeue(state, head);
          head.fail(abandoned ? abandoned.reason : error);
        }
        setIdle(state);
        this.#host.process(name);
      },
    );
  }

  /**
   * `steal`: the session hands its hold back, every holder here loses the
   * lock, then the session takes it from everyone else. Over an exclusive
   * hold of this client the server is asked first, while the hold stays (an
   * acquire of a held key in the same mode changes nothing): a refusal
   * (`forbidden`, `rate_limited`, ...) rejects the steal and leaves the
   * holders holding. A shared hold cannot be asked so (the other mode is
   * `bad_request`). A refused hand-back also leaves the hold and its holders
   * as they were (the server still holds it for the session). Only a refusal
   * of the final steal acquire comes after the hold was given up: the
   * holders have been robbed, and the steal rejects with the refusal, or
   * with `not_acquired` when the server did not grant it.
   *
   * `made` is the steal's place in the order of this client's requests: a
   * request made after it waits for it; one made before may still be
   * granted, and is then robbed by it.
   */
  async steal(name: string, state: NameState, made: number): Promise<Holder> {
    state.steals.push(made);
    let decided: () => void = () => undefined;
    try {
      while (state.busy || state.checking) {
        // A request the server could grant at once is granted first (and then robbed, as in a browser,
        // where it would already hold the lock); one waiting in the server queue is taken back out of it
        // (a session may not queue and steal at once) and keeps its place here, among this client's
        // requests; in the server queue it asks again at the back, unlike in a browser.
        const inFlight = state.queue.find((waiter) => waiter.inFlight);
        if (inFlight?.serverQueued && !inFlight.requeue) {
          inFlight.requeue = true;
          inFlight.controller.abort(new DOMException('a steal took precedence', 'AbortError'));
        }
        await nextChange(state);
      }
      state.busy = true;
      // Holders that end while the server is asked keep the lock until it answered (see `HoldHandBack.release`).
      state.stealing = new Promise<void>((resolve) => (decided = resolve));
      try {
        const own = state.lease;
        if (own?.mode === 'exclusive') {
          const granted = await this.#host.acquire(name, { steal: true });
          if (!granted) throw new LockError('not_acquired', `steal of ${JSON.stringify(name)} was not granted`);
          // The own hold was lost while asked (stolen, revoked, expired): that acquire was the steal, with a new token.
          if (granted !== own) return this.#adopt(name, state, granted, 'exclusive');
        }
        // A steal is a new grant with a new, larger fencing token, also when this session held the lock: the
        // robbed callbacks may still write with the old token, and the resource must be able to refuse them.
        // So the session's own hold is released first (another session may be granted it meanwhile, and is
        // then stolen from like anyone else). The holders keep it until the server accepted: a refused release
        // leaves the hold with the session, so the steal gives up with nothing changed.
        if (own) {
          await own.release().catch((error: unknown) => {
            // Refused but lost meanwhile (the loss broke the holders): nothing is left to hand back, the steal goes on.
            if (own.held) throw error;
          });
          if (state.lease === own) state.lease = null;
        }
        breakHolders(state, new DOMException(`lock ${JSON.stringify(name)} was stolen`, 'AbortError'));
        const lease = await this.#host.acquire(name, { steal: true });
        if (!lease) throw new LockError('not_acquired', `steal of ${JSON.stringify(name)} was not granted`);
        return this.#adopt(name, state, lease, 'exclusive');
      } finally {
        setIdle(state);
      }
    } finally {
      state.stealing = undefined;
      decided();
      state.steals.splice(state.steals.indexOf(made), 1);
      this.#host.process(name);
    }
  }

  /**
   * Records a new server hold for the name and its first holder; a loss of
   * the hold, or its release through the lease API, breaks every holder. A hold gone before it got here breaks the
   * holder at once, so its request rejects with an `AbortError` without
   * calling back (an `ifAvailable` one too: the lock was available, and
   * taken away before the callback): one lost (its `lost` came before or in
   * the same read as the grant), whose signal fires no more, and one
   * released (a re-acquire of the key's lease-API hold answered after that
   * lease's release), which the server no longer holds for the session.
   */
  #adopt(name: string, state: NameState, lease: Lease, mode: LockMode): Holder {
    if (!lease.held) {
      state.lease = null;
      const holder = holdFor(name, state, lease, mode);
      const reason: unknown = lease.signal.aborted
        ? holderLossReason(name, lease.signal.reason)
        : new DOMException(`lock ${JSON.stringify(name)} was released`, 'AbortError');
      breakHolders(state, reason);
      return holder;
    }
    state.lease = lease;
    const ended = (reason: unknown) => {
      if (state.lease !== lease) return;
      state.lease = null;
      breakHolders(state, reason);
      this.#host.process(name);
    };
    lease.signal.addEventListener('abort', () => ended(holderLossReason(name, lease.signal.reason)), { once: true });
    // A release of the same hold through the lease API (a name also used through `acquire()`) takes it
    // from the holders as a loss does. The Web Locks face's own releases are not that: its hand-back
    // clears `state.lease` first, and a steal releases the own hold while the name is `busy`.
    lease.onReleased(() => {
      if (!state.busy) ended(new DOMException(`lock ${JSON.stringify(name)} was released`, 'AbortError'));
    });
    return holdFor(name, state, lease, mode);
  }
}
