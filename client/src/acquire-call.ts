/**
 * How `LockClient` sends an acquire: only once the holds of its key that the
 * client lets go of in the background are gone, and, when the caller gives
 * up while it is queued, cancelled at once with a grant that raced the
 * cancel handed back in the background. Also the cancellable call that
 * `acquire` and `wait` share, and the check of the durations the client
 * sends.
 */
import { durationSchema, ErrorCode, MAX_DURATION_MS, type Limits } from '@lockwire/protocol';
import type { Connection } from './connection.js';
import type { ConnectionKeeper } from './connection-keeper.js';
import { LockError } from './errors.js';
import { releaseHoldUntilGone, waitForLetGo, type HoldReleases, type LetGoOutcome } from './hold-release.js';
import type { Grant, LeaseBook } from './lease-book.js';
import type { AcquireOptions } from './options.js';
import { deferred, type PendingCall } from './pending-calls.js';

/** What an acquire needs from its client. */
export interface AcquireHost {
  /** The connection, its reconnects and the client's state. */
  readonly keeper: ConnectionKeeper;
  /** The leases the client holds: a grant becomes one. */
  readonly leases: LeaseBook;
  /** The holds the client lets go of in the background, by key (see `LockClient`). */
  readonly releases: HoldReleases;
  /** The server's announced limits (their `rateLimit` paces a refused release of a late grant). */
  limits(): Limits;
}

/**
 * Refuses a duration option the protocol does not take (it takes `null`,
 * absent, or a finite number of milliseconds from 0 to 2147483647), before
 * anything is sent: JSON turns `NaN` and the infinities into `null`, which
 * the server would read as "no limit" rather than refuse.
 *
 * @throws LockError `bad_request` naming the option, as the server would.
 */
export function checkDuration(name: string, value: unknown): void {
  if (value === undefined || durationSchema.safeParse(value).success) return;
  const got = typeof value === 'number' ? String(value) : typeof value;
  throw new LockError(
    ErrorCode.BadRequest,
    `${name}: must be null or a number of ms from 0 to ${MAX_DURATION_MS}, got ${got}`,
  );
}

/** An acquire sent and not yet answered for good, as another acquire of its key waits on it. */
class InFlightAcquire {
  /** True once the server said it waits in the key's queue. */
  queued = false;
  readonly #answered = deferred<void>();
  readonly #settled = deferred<void>();
  /** Resolves at the server's first answer: queued, or the reply. */
  readonly answered = this.#answered.promise;
  /** Resolves once the reply arrived and its grant, if any, was adopted (or the call failed). */
  readonly settled = this.#settled.promise;
  /** True once settled. */
  done = false;

  queue(): void {
    this.queued = true;
    this.#answered.resolve();
  }

  settle(): void {
    this.done = true;
    this.#answered.resolve();
    this.#settled.resolve();
  }
}

/** The acquires of one client; see `LockClient.acquire()` for what the caller sees. */
export class AcquireCalls {
  readonly #host: AcquireHost;
  /**
   * The acquire of each key in flight (sent, not settled). A steal sent beside another replaces it here until the
   * steal settled, and that one, if still in flight (the server refused the steal: the session waits in its queue),
   * is put back: an acquire made meanwhile then waits for it rather than being sent beside it.
   */
  readonly #acquiring = new Map<string, InFlightAcquire>();

  constructor(host: AcquireHost) {
    this.#host = host;
  }

  /**
   * Resolves at the first answer (queued, the reply, or the call's failure)
   * of the acquire of `key` in flight; undefined when there is none.
   */
  firstAnswer(key: string): Promise<void> | undefined {
    return this.#acquiring.get(key)?.answered;
  }

  /** `acquire()`, telling a new lease from the one this client already had (`fresh`). */
  async send(key: string, options: AcquireOptions): Promise<Grant | null> {
    checkDuration('acquireTimeout', options.acquireTimeout);
    checkDuration('holdTimeout', options.holdTimeout);
    const { signal } = options;
    signal?.throwIfAborted();
    let connection = this.#host.keeper.live();
    let acquireTimeout = options.acquireTimeout;
    // Until nothing of this client is in flight on the key. Each wait counts against `acquireTimeout`: the
    // server's timer starts only once the acquire is sent. A drop or close of the connection ends a wait: the
    // acquire is then sent on that connection, which rejects it with the error its pending calls got
    // (`connection_lost`, `connection_closed`).
    for (;;) {
      // A steal is sent at once, whatever is in flight: the server grants it at once or refuses it.
      const acquiring = options.steal ? undefined : this.#acquiring.get(key);
      const releasing = this.#host.releases.pending(key);
      // A steal with acquireTimeout 0 is sent at once: the server refuses it (`bad_request`), whatever is let go of.
      const letGo = releasing && !(options.steal && acquireTimeout === 0) ? releasing : undefined;
      const closed = connection.closedSignal;
      let waited: LetGoOutcome;
      if (acquiring) {
        // The server refuses a second request of a session for a key it already waits for: this one waits for
        // that acquire, and then goes on as any acquire does, answered with the hold it got (same lease, not
        // fresh) or sent itself when it got none. Whether a key the client is acquiring is free is known only
        // from that acquire's first answer: a try-once acquire waits for that one, and is not granted if it
        // was queued.
        if (acquireTimeout === 0) {
          waited = await waitForLetGo(acquiring.answered, { signal, closed });
          if (waited.ended === 'gone' && acquiring.queued && this.#acquiring.get(key) === acquiring) return null;
        } else {
          waited = await waitForLetGo(acquiring.settled, { timeout: acquireTimeout, signal, closed });
        }
      } else if (letGo) {
        // Until that hold is gone the session holds the key: a try-once acquire is not granted, and sending it
        // would be answered with the very hold being let go of.
        if (acquireTimeout === 0) return null;
        // An acquire of the key sent now could be answered with a hold the client is releasing (a refused
        // release asked again, a late grant of an abandoned acquire), which that release then drops; the
        // server refuses one while an abandoned one is still queued. Not so for a steal: the server grants it
        // at once, so its timeout never runs out there, nor while it waits here.
        waited = await waitForLetGo(letGo, { timeout: options.steal ? undefined : acquireTimeout, signal, closed });
      } else {
        break;
      }
      if (waited.ended === 'timeout') return null;
      // A try-once acquire stays one; a steal's timeout is not counted down (see above).
      if (!options.steal && acquireTimeout !== 0) acquireTimeout = waited.left;
      if (waited.ended === 'closed') break;
      connection = this.#host.keeper.live();
    }
    // Before the acquire is sent: a release of a hold of this key that a resume gave back is not asked again.
    this.#host.keeper.claim(key);
    const mode = options.mode ?? 'exclusive';
    // Until the call settled (its grant adopted), a `lost` of the key is remembered: the grant may name that hold.
    const done = this.#host.leases.acquiring(key);
    const inFlight = new InFlightAcquire();
    const { onQueued } = options;
    const call = connection.request(
      'acquire',
      {
        key,
        mode: options.mode,
        acquireTimeout,
        holdTimeout: options.holdTimeout,
        steal: options.steal,
        meta: options.meta,
      },
      {
        onQueued: (position) => {
          inFlight.queue();
          onQueued?.(position);
        },
        onResult: (result): Grant | null => (result.acquired ? this.#host.leases.adopt(key, mode, result) : null),
      },
    );
    const beside = this.#acquiring.get(key);
    this.#acquiring.set(key, inFlight);
    const settle = () => {
      done();
      if (this.#acquiring.get(key) === inFlight) {
        if (beside && !beside.done) this.#acquiring.set(key, beside);
        else this.#acquiring.delete(key);
      }
      inFlight.settle();
    };
    void call.result.then(settle, settle);
    return abortable(connection, call, signal, {
      // The caller gave up but the grant won the race: hand the lock back at once (and again if refused).
      // Done only once the hold is gone, not at the first answer: while a refused release is asked again the
      // session still holds the key, and a new acquire of it would be answered with that hold.
      late: async (late) => {
        if (late?.fresh) await releaseHoldUntilGone(late.lease, this.#host.limits());
      },
      abandoned: (settled) => this.#host.releases.track(key, settled),
    });
  }
}

/**
 * Awaits a cancellable call (`acquire`, `wait`). On abort before the reply:
 * sends `cancel` and rejects with `signal.reason` at once, without waiting
 * for the server, which may not answer for long (a hung store, a relay
 * that drops frames). The call's fate is handled in the background: a
 * late result goes to `after.late`, and `after.abandoned` gets a promise
 * that resolves once that is done (or the connection is gone). Both the
 * cancel and `after.abandoned` happen in the abort listener itself, so
 * code that runs right after `abort()` (an acquire of the same key) finds
 * the call given up. A signal already aborted gives the call up at once.
 */
export function abortable<T>(
  connection: Connection,
  call: PendingCall<T>,
  signal: AbortSignal | undefined,
  after: { late?: (late: T | undefined) => Promise<void>; abandoned?: (settled: Promise<void>) => void } = {},
): Promise<T> {
  if (!signal) return call.result;
  return new Promise<T>((resolve, reject) => {
    // The reply or the abort, whichever the client sees first, decides; the other is then the late one.
    let decided = false;
    const decide = (): boolean => {
      if (decided) return false;
      decided = true;
      signal.removeEventListener('abort', onAbort);
      return true;
    };
    const onAbort = () => {
      if (!decide()) return;
      const cancel = connection.request('cancel', { target: call.id }, { onResult: (r) => r.cancelled });
      void cancel.result.catch(() => false);
      // The server answers the call before the cancel (cancelled, or what it decided first).
      const settled = call.result
        .then((late) => after.late?.(late), () => undefined)
        .then(() => undefined, () => undefined);
      // Recorded before `abort()` returns: a grant that raced the cancel is in the session until handed back, and
      // an acquire of the key sent before that would be answered with it.
      after.abandoned?.(settled);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    call.result.then(
      (value) => {
        if (decide()) resolve(value);
      },
      (error: unknown) => {
        if (decide()) reject(error);
      },
    );
  });
}
