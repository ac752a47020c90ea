/** The least a socket held by `WriteTurns` must do: Node's `Writable` corking. */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

/**
 * Gathers the frames a server writes to one connection within one turn into
 * one write. A step can send one connection many frames at once: a session
 * that held 100 keys ends and each watcher gets 100 `released` events, a
 * client that pipelines gets a reply per request. Each frame written on its
 * own costs a system call and, on a real network, a packet; gathered, they
 * cost one of each.
 *
 * A turn is one run of JavaScript from the event loop: a callback, what it
 * calls, and the promise callbacks run right after it. A connection's first
 * frame of a turn is written at once, as it would be anyway (a grant or a
 * reply is never held back); from its second frame in the same turn its
 * socket is corked, and every socket corked in the turn is uncorked
 * together when the turn's work is done, in `process.nextTick`: the events
 * of one step go out together, and so do the replies to the requests of one
 * read that answer in the same round of promise callbacks. Not later (in
 * `setImmediate`, as the Redis client writes its commands): that would make
 * every turn that writes a frame cost the event loop one more round, a
 * system call, for what few connections gain.
 *
 * One per server (no process-wide state: servers in one process do not
 * share turns, each ends its own).
 */
export class WriteTurns {
  #turn = 1;
  #ending = false;
  #corked: Corkable[] = [];
  readonly #end = () => this.#endTurn();

  /** The current turn's number (from 1): a connection compares it with the turn it last wrote in. */
  get current(): number {
    return this.#turn;
  }

  /** A connection wrote its first frame of this turn: the turn ends (and moves on) once its work is done. */
  wrote(): void {
    if (this.#ending) return;
    this.#ending = true;
    process.nextTick(this.#end);
  }

  /** Corks `socket` until the turn ends; it is uncorked then, after any earlier uncork of its own. */
  hold(socket: Corkable): void {
    socket.cork();
    this.#corked.push(socket);
    this.wrote();
  }

  #endTurn(): void {
    this.#ending = false;
    this.#turn += 1;
    const corked = this.#corked;
    this.#corked = [];
    // An uncork of a socket that is no longer corked (written out early, or destroyed) does nothing.
    // One that throws must not leave the sockets after it corked for good: they are uncorked first.
    let failure: { error: unknown } | null = null;
    for (const socket of corked) {
      try {
        socket.uncork();
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure) throw failure.error;
  }
}
