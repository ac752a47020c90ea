/**
 * The requests of one `Connection` that await their reply: numbered 1, 2,
 * 3, ..., each reply matched to its call by id and parsed with its op's
 * result schema, and every call still waiting rejected at once when the
 * connection ends.
 */
import { resultSchemas, type OkReply, type Op, type ReplyMessage, type ResultOf } from '@lockwire/protocol';
import { LockError } from './errors.js';

/** How a request's reply is turned into the call's value. */
export interface RequestOptions<O extends Op, T> {
  /**
   * Maps the typed result while the reply frame is being handled, before any
   * later frame: state that a following push relies on (a new lease that a
   * `lost` may name, a watch that `event`s feed) is in place by then.
   */
  onResult: (result: ResultOf<O>) => T;
  /** Called once if an `acquire` had to join the queue. */
  onQueued?: ((position: number) => void) | undefined;
}

/** A request in flight: its wire id (for `cancel`) and its outcome. */
export interface PendingCall<T> {
  readonly id: number;
  /** Resolves with the mapped result; rejects with a `LockError` (the wire error, or `connection_closed`). */
  readonly result: Promise<T>;
}

interface PendingEntry {
  accept(reply: OkReply): void;
  reject(error: LockError): void;
  onQueued: ((position: number) => void) | undefined;
}

/** A promise and the functions that settle it, for an outcome that arrives in a later frame. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

/** A new unsettled {@link Deferred}: a call's result, or a connection's welcome and end. */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The calls of one connection that were sent and not yet answered, by request id. */
export class PendingCalls {
  #nextId = 1;
  readonly #entries = new Map<number, PendingEntry>();
  readonly #malformed: (detail: string) => LockError;

  /**
   * `malformed(detail)` ends the connection with a protocol error and
   * returns that error; it is called for a reply whose result does not
   * match its op, and the call rejects with what it returns.
   */
  constructor(malformed: (detail: string) => LockError) {
    this.#malformed = malformed;
  }

  /** Number of requests sent and not yet answered. */
  get size(): number {
    return this.#entries.size;
  }

  /** The id of the next request: 1, 2, 3, ... A request refused before it was sent uses one up too. */
  nextId(): number {
    return this.#nextId++;
  }

  /**
   * Records the call `id` of `op`, settled through `call` when its reply
   * arrives: with `options.onResult` of the parsed result, or rejected with
   * the server's error, with the protocol error of a malformed result, or
   * with what `onResult` threw.
   */
  add<O extends Op, T>(id: number, op: O, options: RequestOptions<O, T>, call: Deferred<T>): void {
    const schema = resultSchemas[op];
    this.#entries.set(id, {
      onQueued: options.onQueued,
      reject: call.reject,
      accept: (reply) => {
        const parsed = schema.safeParse(reply);
        if (!parsed.success) {
          const error = this.#malformed(`the ${op} reply has an unexpected shape`);
          call.reject(error);
          return;
        }
        try {
          // resultSchemas[op] parses to ResultOf<op>; TypeScript cannot follow the generic index.
          call.resolve(options.onResult(parsed.data as ResultOf<O>));
        } catch (error) {
          call.reject(error);
        }
      },
    });
  }

  /** Forgets the call `id` without settling it: its request could not be sent. */
  delete(id: number): void {
    this.#entries.delete(id);
  }

  /** The `onQueued` callback of the call `id` while it waits for its reply. */
  onQueued(id: number): ((position: number) => void) | undefined {
    return this.#entries.get(id)?.onQueued;
  }

  /** Settles the call `reply` answers; a reply that answers no waiting call is ignored. */
  settle(reply: ReplyMessage): void {
    // A string id is the keepalive's ping: its answer, as any frame, has already told the keepalive enough.
    const entry = typeof reply.id === 'number' ? this.#entries.get(reply.id) : undefined;
    if (!entry || typeof reply.id !== 'number') return;
    this.#entries.delete(reply.id);
    if (reply.ok) entry.accept(reply);
    else entry.reject(new LockError(reply.error.code, reply.error.message));
  }

  /** Rejects every call still waiting with `error`, which ended the connection; none is left afterwards. */
  rejectAll(error: LockError): void {
    const pending = [...this.#entries.values()];
    this.#entries.clear();
    for (const entry of pending) entry.reject(error);
  }
}
