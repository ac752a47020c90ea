import calculateSlot from 'cluster-key-slot';
import { CommandConnection, type CommandClient, type Deadlines } from './command-deadlines.js';

/** The default number of command connections a node opens to a single Redis server. */
export const DEFAULT_REDIS_CONNECTIONS = 2;

/** The most command connections a node may open to a single Redis server. */
export const MAX_REDIS_CONNECTIONS = 64;

/** What a `CommandPool` is made of. */
export interface CommandPoolOptions<C extends CommandClient> {
  /** One or more connected clients that answered, the first for commands of no key. */
  readonly clients: readonly C[];
  /** A new client, not yet connected, its error events handled. */
  readonly make: () => C;
  readonly deadlines: Deadlines;
  /** Told each time a connection was found hung. */
  readonly onHung: () => void;
  /**
   * ms within which a connection that carries no command sends a PING
   * (default: never). Redis closes a connection idle for its `timeout`
   * setting, and node-redis reports that as a connection error, which the
   * node's liveness takes for Redis going away; a connection whose slots no
   * periodic work of the node touches would otherwise go idle.
   */
  readonly keepAlive?: number;
}

/**
 * The command connections of a node to a single Redis server, each command
 * sent on the connection of its key's hash slot.
 *
 * Why more than one: a node and Redis work in turns on one connection.
 * node-redis writes the commands made in one event-loop turn together, and
 * Redis answers the commands it read together, so with calls from many
 * sessions in flight the node processes a batch of replies while Redis
 * waits, then Redis runs the batch of commands made meanwhile while the node
 * waits; each is idle about half the time and a call costs the sum of
 * both sides' work. On two or more connections the batches of one overlap
 * the other's: Redis runs one connection's commands while the node reads
 * the other's replies (`docs/benchmarks.md` measures it).
 *
 * Why by hash slot: Redis runs the commands of one connection in the order
 * they were sent, and nothing orders the commands of two connections. The
 * store keeps every record of one lock key in one hash slot (a hash tag)
 * and relies on no order between slots, as on a Redis Cluster, where slots
 * live on different servers: so one slot's commands, a key's steps among
 * them, keep their order here as on one connection. The one exception, a
 * key's record in the node's key set, goes on the lock key's connection
 * (see `NodeKeySet`). Commands of no
 * key (SCAN, INFO, TIME) go on the first connection.
 *
 * The connections go to one server over one path, so when one is found hung
 * (see `CommandConnection`) every other is given up with it: calls then fail
 * at once on each until its new connection answered a PING, instead of
 * queueing on a connection that would only be found hung a timeout later
 * and would carry them all to Redis once it answers again.
 */
export class CommandPool<C extends CommandClient> {
  readonly #connections: readonly CommandConnection<C>[];
  /** Per connection: whether it carried a command since the last keep-alive round. */
  readonly #used: boolean[];
  readonly #keepAlive: ReturnType<typeof setInterval> | null = null;

  constructor({ clients, make, deadlines, onHung, keepAlive }: CommandPoolOptions<C>) {
    if (clients.length === 0) throw new Error('a command pool needs a connection');
    const hung = (found: CommandConnection<C>) => {
      onHung();
      for (const other of this.#connections) if (other !== found) other.giveUp();
    };
    const connections: CommandConnection<C>[] = [];
    for (const client of clients) {
      const connection: CommandConnection<C> = new CommandConnection(client, make, deadlines, () => hung(connection));
      connections.push(connection);
    }
    this.#connections = connections;
    this.#used = connections.map(() => false);
    if (keepAlive !== undefined) {
      // Rounds at half the period: a connection used just after a round is skipped by the next one, and
      // pinged by the one after, so none is idle longer than `keepAlive`.
      this.#keepAlive = setInterval(() => this.#ping(), Math.max(1, Math.floor(keepAlive / 2)));
      this.#keepAlive.unref?.();
    }
  }

  /** Sends `args` on the connection of `key`'s hash slot (the first connection when undefined). */
  run(key: string | undefined, args: string[]): Promise<unknown> {
    const lane = key === undefined ? 0 : this.laneOf(key);
    this.#used[lane] = true;
    return (this.#connections[lane] ?? (this.#connections[0] as CommandConnection<C>)).run(args);
  }

  /** The index of the connection that carries `key`'s commands. */
  laneOf(key: string): number {
    return this.#connections.length === 1 ? 0 : calculateSlot(key) % this.#connections.length;
  }

  /** Closes every connection; none is replaced after. */
  close(): void {
    if (this.#keepAlive !== null) clearInterval(this.#keepAlive);
    for (const connection of this.#connections) connection.close();
  }

  /** A PING on each connection that carried nothing since the last round; a failed one is told as any broken connection is. */
  #ping(): void {
    this.#connections.forEach((connection, lane) => {
      if (!this.#used[lane]) connection.run(['PING']).catch(() => {});
      this.#used[lane] = false;
    });
  }
}
