/**
 * When a Web Locks shared request of a client may share that client's
 * shared hold of a name: only while the server queue of the name is empty,
 * which the client learns by asking (`status`).
 */
import type { LockStatus } from '@lockwire/protocol';
import { holdFor, stopRecheck, wake, type NameState, type Waiter } from './web-lock-state.js';

/** The first wait before a request waiting behind the server queue asks again, in ms; it doubles per answer. */
const FIRST_RECHECK_MS = 50;
/** The longest wait between two such asks, in ms. */
const MAX_RECHECK_MS = 2000;

/** What the sharing decision needs from the local queue: `status`, and a look at the name's queue once decided. */
export interface SharingHost {
  status(key: string): Promise<LockStatus>;
  /** Grants what can be granted for the name now. */
  process(name: string): void;
}

/**
 * Decides whether the shared requests at the head of a name's local queue
 * share the client's shared hold, and keeps a request that waits behind the
 * server queue asking again until it may share or the hold is gone.
 */
export class SharedHoldSharing {
  readonly #host: SharingHost;

  constructor(host: SharingHost) {
    this.#host = host;
  }

  /**
   * Whether `waiter` could share the name's hold, as far as this client
   * knows. A request made after a steal of this client that is not done yet
   * waits for it; one made before is granted (and then robbed by the steal).
   */
  mayShare(state: NameState, waiter: Waiter): boolean {
    const beforeSteals = waiter.made < (state.steals[0] ?? Infinity);
    return waiter.mode === 'shared' && state.lease?.mode === 'shared' && !waiter.behindServerQueue && beforeSteals;
  }

  /** Whether the head waits behind the server queue while this client holds the name shared. */
  waitsBehindServerQueue(state: NameState): boolean {
    return state.queue[0]?.behindServerQueue === true && state.held.size > 0 && state.lease?.mode === 'shared';
  }

  /**
   * Shares the name's shared hold with the shared requests at the head of the
   * local queue if the server queue is empty, in request order (`ifAvailable`
   * requests among them); otherwise an `ifAvailable` head gets `null` and an
   * ordinary head waits behind the server queue (see
   * `Waiter.behindServerQueue`) and asks again later. A status the server
   * refuses counts as a queue that is not empty: the request never overtakes
   * anyone on a guess (an `ifAvailable` head fails with the refusal).
   *
   * A steal of this client made meanwhile does not stop the grant of the
   * requests made before it: in a browser they were grantable at once and
   * hold the lock when the steal comes, so the steal robs them.
   */
  share(name: string, state: NameState): void {
    const lease = state.lease;
    state.checking = true;
    const decide = (empty: boolean, refusal?: { error: unknown }) => {
      // A lost hold meanwhile leaves the decision to the next look at the queue; the release of a hold whose
      // holders ended waits for this decision (see `WebLockQueue.release`).
      if (lease && state.lease === lease) {
        for (let head = state.queue[0]; head && this.mayShare(state, head); head = state.queue[0]) {
          if (empty) {
            state.queue.shift();
            head.holder = holdFor(name, state, lease, head.mode);
          } else if (head.ifAvailable) {
            state.queue.shift();
            if (refusal) head.fail(refusal.error);
            else head.holder = null;
          } else {
            head.behindServerQueue = true;
            head.blocked = true;
            this.#recheckLater(name, state, head);
            break;
          }
        }
      }
      this.checked(name, state);
    };
    this.serverQueueEmpty(name).then(
      (empty) => decide(empty),
      (error: unknown) => decide(false, { error }),
    );
  }

  /** The check of the server queue is done: what waited for it may look again. */
  checked(name: string, state: NameState): void {
    state.checking = false;
    wake(state);
    this.#host.process(name);
  }

  /**
   * Asks the server whether anyone waits for `name`. This client's hold says
   * nothing about the server queue, and the Web Locks grant rule needs it: a
   * shared request is grantable only if no exclusive request was made before
   * it, also by another client, so readers cannot starve a queued writer.
   * The session holds the name, so the queue holds only other sessions; with
   * a shared hold, a non-empty queue starts with an exclusive request.
   */
  async serverQueueEmpty(name: string): Promise<boolean> {
    const status = await this.#host.status(name);
    return status.queue.length === 0;
  }

  /**
   * The head waiting behind the server queue asks the server again (one
   * `status`) as soon as nothing else runs for the name. Also called when a
   * holder of the name ends, a moment this client is at the name anyway.
   */
  recheckNow(name: string, state: NameState): void {
    stopRecheck(state);
    const head = state.queue[0];
    if (head && this.waitsBehindServerQueue(state)) head.behindServerQueue = false;
    this.#host.process(name);
  }

  /**
   * Asks the server again after a while (doubling from 50 ms to 2 s) whether
   * its queue of the name is still not empty. The request ahead there may
   * leave it (aborted, timed out, disconnected), and the waiting shared
   * request is then grantable at once, as in a browser; without asking, it
   * would wait for this client's holders to end, forever when one of them
   * waits for it (a nested read). The server tells a queue change only to
   * watchers, and a watch of the client's own would cost the session one of
   * its watch slots. The local queue cancels the timer once no request waits
   * behind the server queue with the hold there (granted, aborted, the hold
   * released, lost or stolen, the client closed).
   */
  #recheckLater(name: string, state: NameState, head: Waiter): void {
    if (state.recheck) return;
    head.recheckDelay = Math.min(MAX_RECHECK_MS, head.recheckDelay * 2 || FIRST_RECHECK_MS);
    state.recheck = setTimeout(() => {
      state.recheck = undefined;
      this.recheckNow(name, state);
    }, head.recheckDelay);
  }
}
