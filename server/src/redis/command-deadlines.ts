import { ErrorReply } from 'redis';

/**
 * Most commands one Redis connection may have queued (written or waiting to
 * be, and unanswered), in node-redis' `commandsQueueMaxLength`; one more is
 * refused at once and fails like any failed call (`store_unavailable`).
 * A healthy connection holds few: one step per session and key at work, the
 * SADD of new keys, renew rounds and watch reads, each answered within
 * milliseconds. A busy node at its default 10,000 connections, each with a
 * step or two under way, stays near 20,000 even while Redis pauses for a
 * moment; 100,000 leaves room for bursts and bounds what a Redis that
 * accepts bytes and never answers can make the node keep (about 500 bytes
 * a command: tens of MB at worst).
 */
export const COMMAND_QUEUE_LIMIT = 100_000;

/** A connection whose calls the deadlines watch for a hang (see `Deadlines.guard`). */
export interface WatchedConnection {
  /** `performance.now()` of the last reply read from it (an error reply too); when made, before any. */
  lastReply: number;
  /** Called when a call on it failed its deadline with no reply from it since the call was sent. */
  readonly silent: () => void;
}

/** Deadlines of Redis calls: see `createDeadlines`. */
export interface Deadlines {
  /** ms a call may take. */
  readonly timeout: number;
  /**
   * `reply`, failed with an `Error` when it has not settled within the
   * timeout. With `on`, a reply marks that connection as answering, and a
   * call failed while the connection answered nothing since the call was
   * sent calls its `silent()` (once per sweep).
   */
  guard<T>(reply: Promise<T>, on?: WatchedConnection): Promise<T>;
  /** Stops the timer; calls still open are never failed. */
  stop(): void;
}

/**
 * Fails every call that got no reply within `timeout` ms. All calls share one
 * timer, armed only while calls are open; node-redis' own per-command
 * timeout costs an `AbortSignal.timeout` (a timer, a weak reference and two
 * listeners) per command, a tenth of a node's CPU per script call. Calls
 * open in start order, and all have the same timeout, so a sweep stops at
 * the first call not yet due.
 *
 * Failing a call does not take the command out of node-redis' queue: on a
 * connection that stays open while nothing comes back (a stopped Redis, a
 * stalled proxy) those commands would pile up, and reach Redis all at once
 * when the path recovers. Hence the report of a silent connection to its
 * owner, which checks it and drops it when it hangs (see `CommandConnection`).
 */
export function createDeadlines(timeout: number): Deadlines {
  interface Open {
    readonly due: number;
    readonly reject: (error: Error) => void;
    readonly on: WatchedConnection | undefined;
  }
  const open = new Set<Open>();
  const every = Math.max(10, Math.floor(timeout / 10));
  let timer: ReturnType<typeof setTimeout> | null = null;
  const arm = () => {
    timer = setTimeout(sweep, every);
    timer.unref?.();
  };
  const sweep = () => {
    timer = null;
    const now = performance.now();
    const silent = new Set<WatchedConnection>();
    for (const call of open) {
      if (call.due > now) break;
      open.delete(call);
      // Nothing read from its connection since it was sent, a whole timeout ago.
      if (call.on !== undefined && call.on.lastReply < call.due - timeout) silent.add(call.on);
      call.reject(new Error(`Redis did not answer within ${timeout} ms`));
    }
    for (const connection of silent) connection.silent();
    if (open.size > 0) arm();
  };
  return {
    timeout,
    guard<T>(reply: Promise<T>, on?: WatchedConnection): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const call: Open = { due: performance.now() + timeout, reject, on };
        open.add(call);
        if (timer === null) arm();
        reply.then(
          (value) => {
            open.delete(call);
            if (on !== undefined) on.lastReply = performance.now();
            resolve(value);
          },
          (error: unknown) => {
            open.delete(call);
            if (on !== undefined && error instanceof ErrorReply) on.lastReply = performance.now();
            reject(error instanceof Error ? error : new Error(String(error)));
          },
        );
      });
    },
    stop() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      open.clear();
    },
  };
}

/** What `CommandConnection` needs of a node-redis client. */
export interface CommandClient {
  connect(): Promise<unknown>;
  destroy(): void;
  sendCommand(args: string[]): Promise<unknown>;
}

/**
 * A command connection to one Redis server (a single server, or a primary of
 * a cluster: see `ClusterConnections`), replaced when it hangs:
 * when a call fails its deadline and the connection answered nothing since
 * the call was sent, nor within the timeout after a PING sent then (about
 * twice the timeout of silence with calls waiting), the client is destroyed
 * (node-redis rejects every command it still queues) and a new one made.
 * node-redis' own reconnects never see this case: the socket stays open,
 * and the node's writes (renew rounds) keep a socket timeout from firing.
 *
 * A new connection carries nothing until it answered a PING within the
 * timeout: a path that still hangs then costs one PING per timeout, not
 * every call made meanwhile, and those calls fail at once. A PING left
 * unanswered (or a connection not made, or closed) within the timeout
 * starts another new connection, one per timeout at most.
 */
export class CommandConnection<C extends CommandClient> {
  readonly #make: () => C;
  readonly #deadlines: Deadlines;
  readonly #onHung: () => void;
  #client: C;
  #watched: WatchedConnection;
  /** False from a hang until the new connection answered its PING. */
  #proven = true;
  /** The connection a PING is checking for a hang, if any. */
  #checking: WatchedConnection | null = null;
  #closed = false;
  /** The next connection's start, while waiting out the timeout of one that failed early. */
  #retry: ReturnType<typeof setTimeout> | null = null;

  /**
   * `first`: a connected client that answered; `make`: a new client, not
   * yet connected, its error events handled; `onHung`: told each time a
   * connection is given up as hung.
   */
  constructor(first: C, make: () => C, deadlines: Deadlines, onHung: () => void) {
    this.#make = make;
    this.#deadlines = deadlines;
    this.#onHung = onHung;
    this.#client = first;
    this.#watched = this.#watch();
  }

  /**
   * Sends a command; fails at once while a connection replacing a hung one
   * has not answered yet. `send`, when given, sends it instead of the
   * client's `sendCommand` (a cluster's routing by key, which follows
   * redirections), over the connection this one stands for.
   */
  run(args: string[], send?: () => Promise<unknown>): Promise<unknown> {
    if (!this.#proven) return Promise.reject(new Error('Redis stopped answering; waiting for a new connection to answer'));
    return this.#deadlines.guard(send === undefined ? this.#client.sendCommand(args) : send(), this.#watched);
  }

  /**
   * Gives the current connection up as hung without checking it (another
   * connection to the same server was found hung) and makes a new one, unless
   * one replacing a hung connection has not answered yet.
   */
  giveUp(): void {
    if (this.#closed || !this.#proven) return;
    this.#replace();
  }

  /** Destroys the current client; no replacement follows. */
  close(): void {
    this.#closed = true;
    if (this.#retry !== null) clearTimeout(this.#retry);
    CommandConnection.#destroy(this.#client);
  }

  #watch(): WatchedConnection {
    const watched: WatchedConnection = { lastReply: performance.now(), silent: () => this.#silent(watched) };
    return watched;
  }

  /**
   * A call failed with nothing read from the connection since it was sent:
   * Redis may be slow (a reply late by less than the timeout is still
   * used), so a PING follows the queue, and the connection is hung only if
   * nothing at all comes back within the timeout after it.
   */
  #silent(watched: WatchedConnection): void {
    if (this.#closed || watched !== this.#watched || this.#checking === watched) return;
    this.#checking = watched;
    const sent = performance.now();
    this.#deadlines.guard(this.#client.sendCommand(['PING'])).then(
      () => this.#checked(watched, false),
      (error: unknown) => this.#checked(watched, !(error instanceof ErrorReply) && watched.lastReply < sent),
    );
  }

  #checked(watched: WatchedConnection, hung: boolean): void {
    if (this.#checking === watched) this.#checking = null;
    if (!hung || this.#closed || watched !== this.#watched) return;
    this.#onHung();
    this.#replace();
  }

  #replace(): void {
    this.#proven = false;
    CommandConnection.#destroy(this.#client);
    const client = this.#make();
    this.#client = client;
    this.#watched = this.#watch();
    const started = performance.now();
    const probe = client.connect().then(() => client.sendCommand(['PING']));
    this.#deadlines.guard(probe).then(
      () => {
        if (client === this.#client) this.#proven = true;
      },
      (error: unknown) => {
        if (client !== this.#client || this.#closed) return;
        // An error reply proves the path as a reply does (a Redis loading its data answers so).
        if (error instanceof ErrorReply) {
          this.#proven = true;
          return;
        }
        // A connection closed at once is tried again no sooner than the timeout allows.
        this.#retry = setTimeout(() => {
          this.#retry = null;
          if (client === this.#client && !this.#closed) this.#replace();
        }, Math.max(0, started + this.#deadlines.timeout - performance.now()));
        this.#retry.unref?.();
      },
    );
  }

  static #destroy(client: CommandClient): void {
    try {
      client.destroy();
    } catch {
      // Closed already.
    }
  }
}
