import { ErrorCode, type Limits } from '@lockwire/protocol';
import type { Connection } from './connection.js';
import { isConnectionError, LockError } from './errors.js';
import { pause } from './reconnect.js';

/** The first wait after a refusal other than `rate_limited`, in ms; it doubles per refusal. */
const FIRST_RETRY_MS = 100;
/** The longest wait between two tries of one request, in ms. */
const MAX_RETRY_MS = 10_000;

/** How {@link retryRefused} asks again. */
export interface RefusedRequest {
  /** Sends the request once; resolves when the server accepted it, rejects with its refusal. */
  send(): Promise<unknown>;
  /** True when nothing is left to do: checked before each try. */
  over(): boolean;
  /** True when a refusal ends the retries (asking again cannot help, or nothing is left to do). */
  final(error: unknown): boolean;
  /** Aborts the wait between two tries (the reason the retries end is then told by `over`). */
  signal: AbortSignal;
  /** The server's announced limits, read at each wait (their `rateLimit` times the wait after `rate_limited`). */
  limits(): Limits;
  /** Runs once when the retries have ended, before the returned promise resolves `undefined`. */
  ended(): void;
}

/**
 * Sends a request the client makes on its own behalf, and while the server
 * refuses it asks again, waiting longer each time (`retryDelay`: doubling
 * from 100 ms, or from the announced rate's frame interval after
 * `rate_limited`, at most 10 s), until it is accepted, `over()`, or a
 * refusal is `final`.
 *
 * Resolves once the first try was answered: with the refusal as
 * `{ error }` (the retries go on in the background), or `undefined` once
 * the retries have ended. Never rejects.
 */
export function retryRefused(request: RefusedRequest): Promise<{ error: unknown } | undefined> {
  return new Promise((answered) => {
    const loop = async () => {
      for (let refusals = 1; !request.over(); refusals += 1) {
        const refusal = await request.send().then(
          () => undefined,
          (error: unknown) => ({ error }),
        );
        if (!refusal || request.final(refusal.error)) return;
        answered(refusal);
        await pause(retryDelay(refusal.error, refusals, request.limits()), request.signal);
      }
    };
    void loop().finally(() => {
      try {
        request.ended();
      } finally {
        answered(undefined);
      }
    });
  });
}

/** The wait before asking again after the `refusals`-th refusal (1-based). */
export function retryDelay(error: unknown, refusals: number, limits: Limits): number {
  const rateLimited = error instanceof LockError && error.code === ErrorCode.RateLimited;
  const first = rateLimited ? frameInterval(limits) : FIRST_RETRY_MS;
  return Math.min(MAX_RETRY_MS, first * 2 ** (refusals - 1));
}

/** The time one frame's worth of the server's rate budget takes to refill, from the announced `rateLimit`. */
function frameInterval(limits: Limits): number {
  const rate: unknown = limits.rateLimit;
  return typeof rate === 'number' && rate > 0 ? Math.min(MAX_RETRY_MS, 1000 / rate) : FIRST_RETRY_MS;
}

/** Sends one request of a retried clean-up on `connection`; resolves when the server accepted it. */
export type CleanupRequest = (connection: Connection) => Promise<void>;

/** Answers after which asking again cannot help, whatever the request: the same frame would be refused again. */
const FINAL_CODES: ReadonlySet<string> = new Set([ErrorCode.BadRequest, ErrorCode.Forbidden, ErrorCode.Unauthorized]);

/**
 * Clean-up requests the client sends on its own behalf and must see
 * accepted (a `release` of a hold a resume gave back that no lease stands
 * for, an `unwatch` of a prefix no watch uses any more), at most one per
 * name (the key or prefix).
 *
 * Such requests name only the key or prefix, so a copy sent after the
 * client took the key (or prefix) up again would undo that new use. A
 * retry therefore lives only while nothing in the client claims its name
 * (`stop(name)`, which the new use calls before it sends anything), and
 * only on the connection it started on: a closed connection took the
 * server's state along, or (with session grace) the next resume reports
 * what is left, and the client starts over from that report.
 */
export class RefusalRetries {
  readonly #running = new Map<string, AbortController>();
  readonly #limits: () => Limits;

  /** `limits`: the server's announced limits (their `rateLimit` times the wait after `rate_limited`). */
  constructor(limits: () => Limits) {
    this.#limits = limits;
  }

  /**
   * Sends `request` on `connection`, and while the server refuses it asks
   * again with the backoff of {@link retryRefused} (doubling from 100 ms, or
   * from the announced rate's frame interval after `rate_limited`, at most
   * 10 s). Ends when the request is accepted, when
   * `settled(error)` says a refusal means nothing is left to do (e.g.
   * `not_holder`), on `bad_request`/`forbidden`/`unauthorized`, when
   * `stop(name)`/`stopAll()` is called, or when `connection` closes. A new
   * `run` of the same name ends the previous one first.
   *
   * Resolves once the first request was answered: with the refusal as
   * `{ error }` (the retries go on in the background), or `undefined`.
   * Never rejects.
   */
  run(
    name: string,
    connection: Connection,
    request: CleanupRequest,
    settled: (error: unknown) => boolean = () => false,
  ): Promise<{ error: unknown } | undefined> {
    this.stop(name);
    const controller = new AbortController();
    this.#running.set(name, controller);
    const onClosed = () => controller.abort();
    connection.closedSignal.addEventListener('abort', onClosed, { once: true });
    if (connection.closedSignal.aborted) controller.abort();
    const { signal } = controller;
    return retryRefused({
      send: () => request(connection),
      // `stop()` or the connection's close aborts the signal, which ends the wait at once.
      over: () => signal.aborted,
      final: (error) => isConnectionError(error) || isFinal(error) || settled(error),
      signal,
      limits: this.#limits,
      ended: () => {
        connection.closedSignal.removeEventListener('abort', onClosed);
        if (this.#running.get(name) === controller) this.#running.delete(name);
      },
    });
  }

  /**
   * The client uses `name` again (acquires the key, watches the prefix): no
   * further request of the running retry is sent. One already sent goes
   * ahead of the new use's frames on the same connection, so it cannot undo them.
   */
  stop(name: string): void {
    const controller = this.#running.get(name);
    if (!controller) return;
    this.#running.delete(name);
    controller.abort();
  }

  /** Ends every retry (the client closed). */
  stopAll(): void {
    const controllers = [...this.#running.values()];
    this.#running.clear();
    for (const controller of controllers) controller.abort();
  }
}

/** A refusal that asking again cannot change: the frame itself is refused (`bad_request`, `forbidden`, `unauthorized`), not its timing. */
export function isFinal(error: unknown): boolean {
  return error instanceof LockError && FINAL_CODES.has(error.code);
}
