import type { Deadlines } from './command-deadlines.js';

type OnMessage = (message: string, channel: string) => void;

/** What the subscriber uses of a node-redis cluster. */
export interface PubSubCluster {
  subscribe(channel: string, listener: OnMessage): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  /** node-redis' slots: `pubSubNode` is the node its pub/sub client is connected to, if any. */
  readonly _slots: { pubSubNode?: { readonly client: PubSubClient; readonly connectPromise?: Promise<unknown> | undefined } | undefined };
}

/** What the subscriber uses of node-redis' pub/sub client. */
interface PubSubClient {
  destroy(): void;
  on(event: 'ready', listener: () => void): unknown;
}

/** What a `ClusterSubscriber` is made of. */
export interface ClusterSubscriberOptions {
  readonly deadlines: Deadlines;
  /**
   * ms after which a pub/sub connection that received nothing while
   * subscribed is taken for dead and replaced (the node publishes a
   * heartbeat to itself more often). Undefined: never.
   */
  readonly idleTimeout: number | undefined;
  /** The connection was found silent and given up: messages are being missed. */
  readonly onTrouble: () => void;
  /** A new connection is subscribed to every channel again: messages may have been missed in between. */
  readonly onResubscribed: () => void;
}

/**
 * The pub/sub side of a Redis Cluster link: node-redis' one pub/sub
 * connection, to a node it picks, replaced when it went silent. node-redis
 * reconnects it when it breaks, but a path that goes silent without
 * breaking (a load balancer or NAT that lost its state) leaves it up and
 * deaf, and nothing is written on it that TCP could find unacknowledged:
 * only keepalive probes end it, minutes later. As on a single server (a
 * socket timeout there), a connection that received nothing for
 * `idleTimeout` while subscribed is destroyed and a new one subscribes to
 * every channel again. node-redis makes the new one as it does once the last
 * channel is unsubscribed: its pub/sub node cleared, the next `subscribe`
 * connects to a node anew.
 *
 * node-redis reconnects a pub/sub connection that broke and subscribes it
 * again by itself, but a cluster passes on only a node client's first
 * 'ready': the subscriber listens to each pub/sub client's own, so that a
 * reconnect is reported as on a single server (`onResubscribed`), and the
 * node asks Redis what it missed meanwhile.
 */
export class ClusterSubscriber {
  readonly #cluster: PubSubCluster;
  readonly #o: ClusterSubscriberOptions;
  readonly #channels = new Map<string, OnMessage>();
  /** `performance.now()` of the last message, or of the last (re)subscribe. */
  #heard = performance.now();
  #timer: ReturnType<typeof setInterval> | null = null;
  #replacing = false;
  /** The pub/sub client whose reconnects are reported. */
  #client: PubSubClient | undefined;

  constructor(cluster: PubSubCluster, options: ClusterSubscriberOptions) {
    this.#cluster = cluster;
    this.#o = options;
    const idle = options.idleTimeout;
    if (idle !== undefined) {
      this.#timer = setInterval(() => this.#check(idle), Math.max(10, Math.floor(idle / 4)));
      this.#timer.unref?.();
    }
  }

  async subscribe(channel: string, onMessage: OnMessage): Promise<void> {
    const heard: OnMessage = (message, from) => {
      this.#heard = performance.now();
      onMessage(message, from);
    };
    this.#channels.set(channel, heard);
    if (this.#channels.size === 1) this.#heard = performance.now();
    await this.#o.deadlines.guard(this.#cluster.subscribe(channel, heard));
    this.#watchClient();
  }

  async unsubscribe(channel: string): Promise<void> {
    this.#channels.delete(channel);
    await this.#o.deadlines.guard(this.#cluster.unsubscribe(channel));
  }

  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /**
   * Listens to the current pub/sub client's 'ready', once it is connected
   * and subscribed: each later one is a reconnect, which node-redis
   * followed with the client's subscriptions.
   */
  #watchClient(): void {
    const client = this.#cluster._slots.pubSubNode?.client;
    if (client === undefined || client === this.#client) return;
    this.#client = client;
    client.on('ready', () => {
      if (client === this.#client) this.#o.onResubscribed();
    });
  }

  #check(idle: number): void {
    // A client node-redis made anew (after a rediscovery moved the pub/sub node) is found here.
    if (!this.#replacing && this.#channels.size > 0) this.#watchClient();
    if (this.#replacing || this.#channels.size === 0 || performance.now() - this.#heard < idle) return;
    this.#replacing = true;
    void this.#replace().finally(() => {
      this.#replacing = false;
    });
  }

  /** Destroys the silent connection and subscribes every channel on a new one; tried again after `idle` when that fails. */
  async #replace(): Promise<void> {
    const slots = this.#cluster._slots;
    const silent = slots.pubSubNode;
    if (silent !== undefined) {
      slots.pubSubNode = undefined;
      try {
        silent.client.destroy();
      } catch {
        // Closed already.
      }
      // A client destroyed while connecting fails its connect, and node-redis then clears the pub/sub
      // node, whichever it is by then: that happens before a new one is made.
      if (silent.connectPromise !== undefined) await this.#o.deadlines.guard(silent.connectPromise).catch(() => {});
    }
    this.#o.onTrouble();
    this.#heard = performance.now();
    try {
      await Promise.all([...this.#channels].map(([channel, heard]) => this.#o.deadlines.guard(this.#cluster.subscribe(channel, heard))));
    } catch {
      // Still silent or unreachable: the next check, an idle timeout from now, tries again.
      return;
    }
    this.#watchClient();
    this.#o.onResubscribed();
  }
}
