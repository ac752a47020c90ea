import calculateSlot from 'cluster-key-slot';
import { CommandConnection, type CommandClient, type Deadlines } from './command-deadlines.js';

/** The default number of command connections a node opens to a single Redis server. */
export const DEFAULT_REDIS_CONNECTIONS = 2;

/** The most command connections a node may open to a single Redis server. */
export const MAX_REDIS_CONNECTIONS = 64;

/**
 * The command connections of a node to a single Redis server, each command
 * sent on the connection of its key's hash slot.
 *
 * Why more than one: a node and Redis work in turns on one connection.
 * node-redis writes the commands made in one event-loop turn together, and
 * Redis answers the commands it read together, so with calls from many
 * sessions in flight the node processes a batch of replies while Redis
 * waits, then Redis runs the batch of commands that made while the node
 * waits; each is idle about half the time and a call costs the sum of
 * both sides' work. On two or more connections the batches of one overlap
 * the other's: Redis runs one connection's commands while the node reads
 * the other's replies (`docs/benchmarks.md` measures it).
 *
 * Why by hash slot: Redis runs the commands of one connection in the order
 * they were sent, and nothing orders the commands of two connections. The
 * store keeps every record of one lock key in one hash slot (a hash tag)
 * and never relies on an order between slots, as on a Redis Cluster, where
 * slots live on different servers: so one slot's commands, a key's steps
 * among them, keep their order here as on one connection. Commands of no
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

  /**
   * `clients`: one or more connected clients that answered, the first for
   * commands of no key; `make`: a new client, not yet connected, its error
   * events handled; `onHung`: told each time a connection was found hung.
   */
  constructor(clients: readonly C[], make: () => C, deadlines: Deadlines, onHung: () => void) {
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
  }

  /** Sends `args` on the connection of `key`'s hash slot (the first connection when undefined). */
  run(key: string | undefined, args: string[]): Promise<unknown> {
    return this.#of(key).run(args);
  }

  /** Closes every connection; none is replaced after. */
  close(): void {
    for (const connection of this.#connections) connection.close();
  }

  #of(key: string | undefined): CommandConnection<C> {
    const connections = this.#connections;
    const first = connections[0] as CommandConnection<C>;
    if (key === undefined || connections.length === 1) return first;
    return connections[calculateSlot(key) % connections.length] ?? first;
  }
}
