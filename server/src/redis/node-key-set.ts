import type { KeyNames } from './key-codec.js';
import type { RedisLink } from './redis-link.js';

/** Keys first used within one tick (on one lane of a single server), recorded by one SADD. */
interface Registration {
  node: string;
  /** A lock key's name on the lane, to route the SADD by (see `RedisLink#commandBefore`). */
  route: string;
  keys: string[];
  done: Promise<void>;
}

/**
 * This node's key set in Redis (`<ns>:nodekeys:<id>`): every key where one of
 * its sessions may have something, so survivors know what to clean up when
 * the node dies. Keys are recorded before a script of the node runs on them,
 * and trimmed once no session here uses them.
 *
 * On a single server a key's SADD and SREM go on the connection of the lock
 * key's own commands (its lane, see `CommandPool`), not on the set's: Redis
 * runs them in order with the key's steps, so a step may follow its SADD at
 * once, and a SREM of a key no session used any more cannot run after the
 * SADD of its next use.
 */
export class NodeKeySet {
  readonly #names: KeyNames;
  /**
   * Encoded keys recorded in this node's key set, with the SADD that records
   * them until Redis answered it (null after: a step of the key need not wait).
   */
  readonly #registered = new Map<string, Promise<void> | null>();
  /** Keys to record with the SADD of the current tick, by lane (one lane on a cluster). */
  readonly #registering = new Map<number, Registration>();

  constructor(names: KeyNames) {
    this.#names = names;
  }

  /** Forgets every recorded key (the node took a new id, with an empty set). */
  clear(): void {
    this.#registered.clear();
  }

  /**
   * Records the key in this node's key set before anything of the node can be
   * in it. The keys first used within one tick go out in one SADD per lane,
   * sent before any of their scripts. Returns what a step of the key must
   * await first, or null once the key's SADD was answered.
   */
  register(link: RedisLink, encoded: string, node: string): Promise<void> | null {
    // Every step of a key awaits the same promise, so steps of one key keep their order.
    const known = this.#registered.get(encoded);
    if (known !== undefined) return known;
    const route = this.#route(encoded);
    const lane = link.laneOf?.(route) ?? 0;
    let batch = this.#registering.get(lane);
    if (batch === undefined || batch.node !== node) {
      batch = this.#openRegistration(link, node, lane, route);
    }
    batch.keys.push(encoded);
    this.#registered.set(encoded, batch.done);
    return batch.done;
  }

  #openRegistration(link: RedisLink, node: string, lane: number, route: string): Registration {
    const keys: string[] = [];
    let settle: (error?: unknown) => void = () => {};
    const done = new Promise<void>((resolve, reject) => {
      settle = (error) => (error === undefined ? resolve() : reject(error instanceof Error ? error : new Error(String(error))));
    });
    const batch = { node, route, keys, done };
    this.#registering.set(lane, batch);
    queueMicrotask(() => {
      if (this.#registering.get(lane) === batch) this.#registering.delete(lane);
      const set = this.#names.nodeKeys(node);
      const forget = () => {
        for (const encoded of keys) if (this.#registered.get(encoded) === done) this.#registered.delete(encoded);
      };
      // Marked in a later turn: a step that began waiting on `done` resumes first, so a step of the same
      // key begun meanwhile (it still awaits `done`, behind it) cannot pass it.
      const recorded = () =>
        setImmediate(() => {
          for (const encoded of keys) if (this.#registered.get(encoded) === done) this.#registered.set(encoded, null);
        });
      const args = ['SADD', set, ...keys];
      if (link.commandBefore) {
        // A single server runs the lane's commands in order: the scripts may follow at once, and
        // fail with the SADD when its connection breaks.
        link.commandBefore(route, args).then(recorded, forget);
        settle();
      } else {
        // Across cluster shards the scripts wait for the SADD.
        link.command(set, args).then(
          () => {
            recorded();
            settle();
          },
          (error: unknown) => {
            forget();
            settle(error);
          },
        );
      }
    });
    return batch;
  }

  /** Removes from node `node`'s set the recorded keys (encoded) not in `inUse`. */
  async trim(link: RedisLink, node: string, inUse: Set<string>): Promise<void> {
    const unused = [...this.#registered.keys()].filter((encoded) => !inUse.has(encoded));
    if (unused.length === 0) return;
    for (const encoded of unused) this.#registered.delete(encoded);
    const set = this.#names.nodeKeys(node);
    const { commandBefore, laneOf } = link;
    if (!commandBefore || !laneOf) {
      await link.command(set, ['SREM', set, ...unused]);
      return;
    }
    // On each key's lane, so that a later SADD of the key runs after it (see the class comment).
    const lanes = new Map<number, { route: string; keys: string[] }>();
    for (const encoded of unused) {
      const route = this.#route(encoded);
      const lane = laneOf(route);
      const group = lanes.get(lane);
      if (group) group.keys.push(encoded);
      else lanes.set(lane, { route, keys: [encoded] });
    }
    await Promise.all([...lanes.values()].map(({ route, keys }) => commandBefore(route, ['SREM', set, ...keys])));
  }

  /** The name every command of the lock key is routed by: the first of its keys, as the step runner sends them. */
  #route(encoded: string): string {
    return this.#names.lockKeys(encoded)[0];
  }
}
