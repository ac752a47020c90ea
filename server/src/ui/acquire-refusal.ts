/**
 * What the editor demo makes of an `acquire` the server refused: whether
 * asking again can help, when to ask, and how to say it. A tab refused a
 * place in line (the line is full, the tab sends too fast, the store is
 * down) asks again; one whose token does not allow the key does not. A
 * refused `watch` of the document is taken the same way: final codes stop
 * the tab, the others are asked again at the next connect.
 */
import { ErrorCode, LockError } from '@lockwire/client';
import { errorText } from './format.js';

/** The first wait before a refused acquire is asked again, in ms; it doubles per refusal in a row. */
const RETRY_FIRST_MS = 250;
/** The longest wait between two asks, in ms. */
const RETRY_MAX_MS = 5000;

/** Refusals of the request itself, not of its timing: asking again gets the same answer. */
const FINAL: ReadonlySet<string> = new Set([ErrorCode.Forbidden, ErrorCode.Unauthorized, ErrorCode.BadRequest]);

/** The protocol's error codes: a `LockError` with one of them is the server's answer. */
const SERVER_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

const REASONS: Readonly<Record<string, string>> = {
  [ErrorCode.TooManyWaiters]: 'the line for this document is full',
  [ErrorCode.TooManyLocks]: 'this tab holds or waits for too many locks',
  [ErrorCode.RateLimited]: 'the server asks this tab to slow down',
  [ErrorCode.StoreUnavailable]: "the server's lock store is unavailable",
  [ErrorCode.ShuttingDown]: 'the server is shutting down',
  [ErrorCode.Forbidden]: 'the token does not allow this user to edit it',
  [ErrorCode.Unauthorized]: 'the token expired or is not valid',
};

/** The server's refusal of an acquire, as the editor shows and handles it. */
export interface AcquireRefusal {
  /** The protocol's error code (`too_many_waiters`, `forbidden`, ...). */
  code: string;
  /** What the code means for the user, secrets redacted. */
  reason: string;
  /** Asking again cannot help (`forbidden`, `unauthorized`, `bad_request`): the tab stays read-only. */
  final: boolean;
  /**
   * A change of the key (a holder gone, a waiter gone) may make room, so
   * the next such event of the watched key asks again before the backoff
   * ends. Not for `rate_limited`, which is about this tab's own pace.
   */
  wakesOnEvents: boolean;
}

/**
 * The refusal `error` stands for, or `undefined` when it is not the
 * server's answer (the connection ended: the tab reconnects instead).
 */
export function acquireRefusal(error: unknown): AcquireRefusal | undefined {
  if (!(error instanceof LockError) || !SERVER_CODES.has(error.code)) return undefined;
  return {
    code: error.code,
    reason: REASONS[error.code] ?? errorText(error),
    final: FINAL.has(error.code),
    wakesOnEvents: error.code !== ErrorCode.RateLimited,
  };
}

/** The wait before asking again after `refusals` refusals in a row (1-based): 250 ms doubling to 5 s. */
export function retryDelay(refusals: number): number {
  return Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(Math.max(0, refusals - 1), 10));
}

/**
 * A wait that ends after its delay or at `wake()`, whichever comes first.
 * The editor wakes it on events of its key that may make room in line.
 */
export class RetryWait {
  #wake: (() => void) | undefined;

  /** Resolves after `ms`, or at the next `wake()` when `wakeable`. */
  wait(ms: number, wakeable: boolean): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      if (wakeable) this.#wake = done;
    });
  }

  /** Ends the wakeable wait in progress, if any. */
  wake(): void {
    this.#wake?.();
  }
}
