import calculateSlot from 'cluster-key-slot';
import { CommandConnection, type CommandClient, type Deadlines } from './command-deadlines.js';

/** What the connections use of a node-redis client of one cluster node. */
export interface NodeClient {
  destroy(): void;
  sendCommand(args: string[]): Promise<unknown>;
}

/** A primary as node-redis' cluster keeps it: its client is made anew by `nodeClient` once cleared. */
export interface ClusterNode {
  readonly address: string;
  client?: NodeClient | undefined;
}

/** What the connections use of a node-redis cluster. */
export interface ClusterClient<N extends ClusterNode> {
  /** Per hash slot, the shard serving it (empty before discovery). */
  readonly slots: ReadonlyArray<{ readonly master: N } | undefined>;
  /** The node's client, made and connected when it has none. */
  nodeClient(node: N): Promise<NodeClient>;
  sendCommand(key: string | undefined, isReadonly: boolean, args: string[]): Promise<unknown>;
}

/**
 * The per-primary command connections of a Redis Cluster, each replaced when
 * it hangs, as a single server's are (see `CommandConnection`): a call that
 * failed its deadline while its primary's connection answered nothing since
 * it was sent starts a PING on that connection, and when nothing at all
 * comes back within the timeout after it, the connection is destroyed (its
 * queued commands fail), a new one is made, and the primary's calls fail at
 * once, with nothing sent, until the new one answered a PING. The other
 * primaries' connections go on: they are other servers, over other paths.
 *
 * The connections are node-redis' own, so that commands keep its routing
 * by key and its handling of redirections (MOVED, ASK): a connection is
 * replaced by destroying the client of the primary's node and clearing it,
 * and node-redis' `nodeClient` then makes and connects a new one, as it does
 * for a node that has none. Commands sent to one primary whatever their
 * keys (`runOn`: INFO, SCAN) go on the same connections and count the
 * same; commands of no key (sent to any node) are only bounded by the
 * deadlines.
 */
export class ClusterConnections<N extends ClusterNode> {
  readonly #cluster: ClusterClient<N>;
  readonly #deadlines: Deadlines;
  readonly #onHung: () => void;
  /** Per primary's address: the node as discovered and its connection (a new node after a rediscovery gets a new one). */
  readonly #byAddress = new Map<string, { node: N; connection: CommandConnection<CommandClient> }>();
  #closed = false;

  /** `onHung`: told each time a primary's connection was found hung. */
  constructor(cluster: ClusterClient<N>, deadlines: Deadlines, onHung: () => void) {
    this.#cluster = cluster;
    this.#deadlines = deadlines;
    this.#onHung = onHung;
  }

  /** Sends `args` to the primary of `key`'s slot (any node when undefined), through node-redis' routing. */
  run(key: string | undefined, args: string[]): Promise<unknown> {
    const send = () => this.#cluster.sendCommand(key, false, args);
    const node = key === undefined || this.#closed ? undefined : this.#cluster.slots[calculateSlot(key)]?.master;
    if (node === undefined) return this.#deadlines.guard(send());
    return this.#connectionOf(node).run(args, send);
  }

  /** Sends `args` to `node`, a primary, on its connection (see `CommandConnection`). */
  runOn(node: N, args: string[]): Promise<unknown> {
    if (this.#closed) return this.#deadlines.guard(this.#cluster.nodeClient(node).then((client) => client.sendCommand(args)));
    return this.#connectionOf(node).run(args);
  }

  /** Stops replacing connections (the cluster's own destroy closes them). */
  close(): void {
    this.#closed = true;
    for (const { connection } of this.#byAddress.values()) connection.close();
    this.#byAddress.clear();
  }

  #connectionOf(node: N): CommandConnection<CommandClient> {
    const known = this.#byAddress.get(node.address);
    if (known?.node === node) return known.connection;
    // The address left the cluster and came back as a new node: node-redis destroyed the old one's client.
    known?.connection.close();
    const make = () => nodeHandle(this.#cluster, node);
    const connection = new CommandConnection(make(), make, this.#deadlines, this.#onHung);
    this.#byAddress.set(node.address, { node, connection });
    return connection;
  }
}

/**
 * One connection of a primary as `CommandConnection` replaces it: the node's
 * client when it connected (before that, whichever client the node has),
 * destroyed and cleared from the node on `destroy`, so that the next
 * `nodeClient` makes another.
 */
function nodeHandle<N extends ClusterNode>(cluster: ClusterClient<N>, node: N): CommandClient {
  let client: NodeClient | undefined;
  return {
    async connect() {
      client = await cluster.nodeClient(node);
    },
    destroy() {
      const own = client ?? node.client;
      if (own === undefined) return;
      if (node.client === own) node.client = undefined;
      own.destroy();
    },
    sendCommand: (args) => (client === undefined ? cluster.nodeClient(node) : Promise.resolve(client)).then((to) => to.sendCommand(args)),
  };
}
