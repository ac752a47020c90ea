import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../logger.js';
import type { KeyNames } from './key-codec.js';
import type { RedisLink } from './redis-link.js';

/**
 * What a `DeadNodeSweep` is given by its node (`NodeLiveness`): the Redis
 * link and key names it reads, the cleanup it runs for a dead id, and the
 * node's state, read at each check.
 */
export interface DeadNodeSweepOptions {
  link: RedisLink;
  names: KeyNames;
  /** The node TTL in ms: the other nodes are checked every tenth of it. */
  ttl: number;
  logger: Logger;
  clock: Clock;
  /** Releases what a dead node's sessions held and drops what they waited for. */
  cleanupDeadNode(id: string): Promise<void>;
  /** The node's current id, null before its first registration. */
  nodeId(): string | null;
  /** True while the node is registered and Redis answers: only then are the other nodes checked. */
  healthy(): boolean;
  /** True once the node stopped: no check is scheduled, and the retiring stops at its next id. */
  closed(): boolean;
  /**
   * Runs after each retiring pass, whether it dropped any id or not (it may
   * have failed): the node may serve again once no previous id is left.
   */
  afterRetirePass(): void;
}

/**
 * Drops what dead ids left in the shared lock table: those of other nodes
 * whose liveness key is gone, and those this node gave up itself (see
 * `NodeLiveness`).
 *
 * Every tenth of the node TTL it reads the registered nodes: a node whose
 * key is gone is dead, and the first survivor to see it runs the cleanup
 * scripts over the keys that node recorded. A cleanup of an id in progress
 * is joined, never run twice at once.
 */
export class DeadNodeSweep {
  readonly #o: DeadNodeSweepOptions;
  #checkTimer: TimerHandle | undefined;
  /** Cleanups of dead nodes' ids in progress, by id: a second look at the same id joins the first. */
  readonly #cleaning = new Map<string, Promise<void>>();
  /** Ids this node gave up whose records may still be in Redis: it does not serve until they are dropped. */
  readonly #previous = new Set<string>();
  /** The drop of what the previous ids left, while it runs (beside the renew rounds, never inside one). */
  #retiring: Promise<void> | null = null;

  constructor(options: DeadNodeSweepOptions) {
    this.#o = options;
  }

  /** True while ids this node gave up may still have records in Redis. */
  get hasPrevious(): boolean {
    return this.#previous.size > 0;
  }

  /** Records an id this node gave up: what it left is dropped by `retireSoon()`. */
  addPrevious(id: string): void {
    this.#previous.add(id);
  }

  /** Stops the checks of the other nodes; a check in flight schedules no other. */
  stop(): void {
    if (this.#checkTimer !== undefined) this.#o.clock.clearTimeout(this.#checkTimer);
  }

  /**
   * Removes what is left in Redis under the ids this node gave up: its
   * sessions were told their locks are lost, so those locks must not stay
   * held, nor its requests queued. Until then the node does not serve: an
   * acquire would meet its session's old hold or queued request. The ids'
   * keys are left to expire: a step this node sent under an old id must not
   * find it gone and take that for a Redis that lost its state. Another node
   * may be cleaning the same id (its key expired): the drops are idempotent,
   * and a cleanup forgets a key of the id's key set only after its drops
   * ran, so an empty set means nothing is left.
   *
   * Runs beside the renew rounds, never inside one: an old id with many keys
   * takes longer to drop than the new id lives without a renew. A renew
   * round starts it when it is not running; one that fails (Redis cannot do
   * it) is tried again by the next round, and resumes where it stopped.
   */
  retireSoon(): void {
    if (this.#retiring || this.#previous.size === 0 || this.#o.closed()) return;
    this.#retiring = (async () => {
      const retired: string[] = [];
      try {
        for (let id = first(this.#previous); id !== undefined && !this.#o.closed(); id = first(this.#previous)) {
          await this.#cleanup(id);
          this.#previous.delete(id);
          retired.push(id);
        }
      } catch (error) {
        this.#o.logger.debug({ err: String(error) }, 'the previous ids of this node not dropped yet; retrying');
      }
      if (retired.length > 0 && this.#previous.size === 0) {
        this.#o.logger.info({ node: this.#o.nodeId(), previous: retired }, 'dropped what previous ids of this node left');
      }
      this.#o.afterRetirePass();
    })().finally(() => {
      this.#retiring = null;
    });
  }

  /** Schedules the next check of the other nodes, a tenth of the node TTL from now. */
  scheduleCheck(): void {
    if (this.#o.closed()) return;
    this.#checkTimer = this.#o.clock.setTimeout(() => void this.#checkOthers(), Math.max(20, Math.floor(this.#o.ttl / 10)));
  }

  async #checkOthers(): Promise<void> {
    const { link, names } = this.#o;
    try {
      if (!this.#o.healthy() || this.#o.nodeId() === null) return;
      const ids = (await link.command(names.nodes(), ['SMEMBERS', names.nodes()])) as string[];
      const me = this.#o.nodeId();
      await Promise.all(
        ids
          .filter((id) => id !== me && !this.#cleaning.has(id))
          .map(async (id) => {
            const alive = Number(await link.command(names.node(id), ['EXISTS', names.node(id)]));
            // Not awaited: a big key set takes a while, and the other nodes are checked meanwhile.
            if (alive === 0) {
              void this.#cleanup(id).catch((error: unknown) => this.#o.logger.debug({ node: id, err: String(error) }, 'dead node cleanup failed'));
            }
          }),
      );
    } catch (error) {
      this.#o.logger.debug({ err: String(error) }, 'node check failed');
    } finally {
      this.scheduleCheck();
    }
  }

  /** Cleans up dead node `id`, or joins the cleanup of it in progress. */
  #cleanup(id: string): Promise<void> {
    const running = this.#cleaning.get(id);
    if (running) return running;
    // An id this node gave up is not a peer that stopped: `retireSoon` reports those once all are dropped.
    if (this.#previous.has(id)) this.#o.logger.debug({ node: this.#o.nodeId(), previous: id }, 'dropping what a previous id of this node left');
    else this.#o.logger.info({ node: id }, 'releasing the locks of a dead node');
    const cleanup = this.#o.cleanupDeadNode(id).finally(() => {
      if (this.#cleaning.get(id) === cleanup) this.#cleaning.delete(id);
    });
    this.#cleaning.set(id, cleanup);
    return cleanup;
  }
}

/** The first of `ids`, in insertion order. */
function first(ids: ReadonlySet<string>): string | undefined {
  for (const id of ids) return id;
  return undefined;
}
