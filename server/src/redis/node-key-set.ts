import type { KeyNames } from './key-codec.js';
import type { RedisLink } from './redis-link.js';

/** Keys first used within one tick, recorded by one SADD. */
interface Registration {
  node: string;
  keys: string[];
  done: Promise<void>;
}

/**
 * This node's key set in Redis (`<ns>:nodekeys:<id>`): every key where one of
 * its sessions may have something, so survivors know what to clean up when
 * the node dies. Keys are recorded before a script of the node runs on them,
 * and trimmed once no session here uses them.
 */
export class NodeKeySet {
  readonly #names: KeyNames;
  /** Encoded keys recorded in this node's key set, with the SADD that recorded them. */
  readonly #registered = new Map<string, Promise<void>>();
  /** Keys to record with the SADD of the current tick. */
  #registering: Registration | null = null;

  constructor(names: KeyNames) {
    this.#names = names;
  }

  /** Forgets every recorded key (the node took a new id, with an empty set). */
  clear(): void {
    this.#registered.clear();
  }

  /**
   * Records the key in this node's key set before anything of the node can be
   * in it. The keys first used within one tick go out in one SADD, sent
   * before any of their scripts.
   */
  register(link: RedisLink, encoded: string, node: string): Promise<void> {
    // Every step of a key awaits the same promise, so steps of one key keep their order.
    const known = this.#registered.get(encoded);
    if (known) return known;
    let batch = this.#registering;
    if (batch === null || batch.node !== node) {
      batch = this.#openRegistration(link, node);
    }
    batch.keys.push(encoded);
    this.#registered.set(encoded, batch.done);
    return batch.done;
  }

  #openRegistration(link: RedisLink, node: string): Registration {
    const keys: string[] = [];
    let settle: (error?: unknown) => void = () => {};
    const done = new Promise<void>((resolve, reject) => {
      settle = (error) => (error === undefined ? resolve() : reject(error instanceof Error ? error : new Error(String(error))));
    });
    const batch = { node, keys, done };
    this.#registering = batch;
    queueMicrotask(() => {
      if (this.#registering === batch) this.#registering = null;
      const set = this.#names.nodeKeys(node);
      const forget = () => {
        for (const encoded of keys) if (this.#registered.get(encoded) === done) this.#registered.delete(encoded);
      };
      const sent = link.command(set, ['SADD', set, ...keys]);
      if (link.mode === 'cluster') {
        // Across cluster shards the scripts wait for the SADD.
        sent.then(
          () => settle(),
          (error: unknown) => {
            forget();
            settle(error);
          },
        );
      } else {
        // One connection keeps commands in order: the scripts may follow at once.
        sent.catch(forget);
        settle();
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
    await link.command(set, ['SREM', set, ...unused]);
  }
}
