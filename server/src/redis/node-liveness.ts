import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { Logger } from '../logger.js';
import type { KeyNames } from './key-codec.js';
import { DeadNodeSweep } from './dead-node-sweep.js';
import type { RedisLink } from './redis-link.js';
import { ShardSentinels } from './shard-sentinels.js';

/** Why a node dropped everything its sessions had. */
export type AbandonCause =
  /** Its liveness key may have expired: survivors may have released its locks. */
  | 'unvouched'
  /** Redis lost its state (restart without persistence, flush): the locks are gone. */
  | 'state_lost';

export interface NodeLivenessHooks {
  /** The node took a new id (first start, or after it abandoned its old one). */
  registered(id: string, previous: string | null): Promise<void>;
  /** Every hold must be reported lost and every pending request settled, now. */
  abandon(cause: AbandonCause): void;
  /** Redis answers again after trouble: notifications may have been missed. */
  recovered(): void;
  /**
   * Runs after each renew round that renewed (or registered anew): retries
   * and housekeeping. Beside the renew rounds, never inside one, and never
   * twice at once: a round that ends while the last one still runs starts none.
   */
  tick(): Promise<void>;
  /** Releases what a dead node's sessions held and drops what they waited for. */
  cleanupDeadNode(id: string): Promise<void>;
}

export interface NodeLivenessOptions {
  link: RedisLink;
  names: KeyNames;
  /** Base of the node's ids; each registration appends an incarnation number. */
  baseId: string;
  /** The node TTL in ms (see `RedisStoreOptions.nodeTtl`). */
  ttl: number;
  logger: Logger;
  hooks: NodeLivenessHooks;
  /**
   * Where the node reads time and sets its timers; default the system clock.
   * Its monotonic reading times the liveness key's life and the holdoff (see
   * `NodeLiveness`); its wall clock only stamps the key's value.
   */
  clock?: Clock;
}

/**
 * A node's membership in the shared lock table.
 *
 * The node keeps `<ns>:node:<id>` alive with a TTL of 0.9 x node TTL,
 * renewing it every third of the node TTL, and checks the other registered
 * nodes every tenth: a node whose key is gone is dead, and the first
 * survivor to see it runs the cleanup scripts over the keys that node
 * recorded (see `DeadNodeSweep`). A node that dies is thus cleaned up
 * within the node TTL.
 *
 * The node stops vouching for its own locks when its last successful renew
 * is 0.9 x TTL old (its key may be gone and survivors may release the locks),
 * and when Redis lost its state: its own key vanished while it should still
 * live, a primary's `run_id` changed (a restart), or on a Redis Cluster its
 * sentinel on a primary vanished (a flush, see `ShardSentinels`). It then abandons
 * everything and registers under a new id, and serves again only once what
 * its old id left in Redis is dropped (see `DeadNodeSweep.retireSoon`). After a loss
 * of state it also refuses grants for one node TTL (and tells other nodes
 * through `<ns>:holdoff`), so every node that still believes in an old lock
 * has told its holder before anybody else is granted.
 *
 * Redis expires the liveness key by its own clock, a TTL counted from when
 * it ran the renew, so the node times that life, and the holdoff, on its
 * monotonic clock: a step of its wall clock (NTP, a VM resumed, `date -s`)
 * must neither keep it vouching for holds whose key another node already
 * saw expire (two exclusive holders at once) nor end a holdoff early.
 */
export class NodeLiveness {
  readonly #o: NodeLivenessOptions;
  readonly #clock: Clock;
  #id: string | null = null;
  #incarnation = 0;
  #healthy = false;
  /** The last renew round failed because Redis is full: it refuses writes, yet answers. */
  #full = false;
  /** Until when (monotonic ms) the node refuses grants after Redis lost its state. */
  #holdoffUntil = Number.NEGATIVE_INFINITY;
  /** The node told its sessions their locks are lost: its current id must not live on. */
  #abandoned = false;
  /** When (monotonic ms) the last renew that succeeded was sent: the liveness key lives 0.9 x TTL from then at least. */
  #lastRenew = 0;
  #runIds = new Map<string, string>();
  /** On a Redis Cluster, the node's keys on every primary; null on a single server (its liveness key is there). */
  readonly #sentinels: ShardSentinels | null;
  /** The checks of the other nodes, and the drops of what dead ids (its own previous ones too) left. */
  readonly #sweep: DeadNodeSweep;
  #renewTimer: TimerHandle | undefined;
  #vouchTimer: TimerHandle | undefined;
  #renewing: Promise<void> | null = null;
  /** The housekeeping (`hooks.tick`) a renew round started, while it runs. */
  #housekeeping: Promise<void> | null = null;
  /** The checks and renews of the round in flight (its housekeeping not included): `stop()` waits for them. */
  #renewSteps: Promise<boolean> | null = null;
  /** The first registration, while `start()` runs it. */
  #starting: Promise<void> | null = null;
  /** The id being registered, until it is the node's: `stop()` removes its keys too. */
  #registering: string | null = null;
  /** The node stopped serving (Redis unreachable, ids to retire): `recovered` is due once it serves again. */
  #recoverDue = false;
  #closed = false;

  constructor(options: NodeLivenessOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    const { link, names, ttl, logger } = options;
    this.#sentinels = link.mode === 'cluster' ? new ShardSentinels({ link, names, ttl: 2 * ttl, clock: this.#clock, logger }) : null;
    this.#sweep = new DeadNodeSweep({
      link,
      names,
      ttl,
      logger,
      clock: this.#clock,
      cleanupDeadNode: (id) => options.hooks.cleanupDeadNode(id),
      nodeId: () => this.#id,
      healthy: () => this.#healthy,
      closed: () => this.#closed,
      afterRetirePass: () => this.#servingAgain(),
    });
    options.link.on('trouble', () => this.#trouble());
  }

  get keyTtl(): number {
    return Math.max(30, Math.floor(this.#o.ttl * 0.9));
  }

  /** The node's current id; throws before `start()`. */
  get id(): string {
    if (this.#id === null) throw new Error('the node is not registered');
    return this.#id;
  }

  /** The node's current id, or null while it registers (broadcasts arrive from the subscription on, before that). */
  get currentId(): string | null {
    return this.#id;
  }

  /**
   * True when the node may change the lock table: registered, Redis
   * reachable, what its previous ids left dropped, no holdoff.
   */
  get serving(): boolean {
    return this.#healthy && this.#id !== null && !this.#sweep.hasPrevious && this.#clock.monotonic() >= this.#holdoffUntil;
  }

  /**
   * True while the node vouches for the holds of its sessions under its
   * current id: false from giving them up (each reported lost) until it
   * registered anew.
   */
  get vouching(): boolean {
    return this.#id !== null && !this.#abandoned;
  }

  /** Why the node is not serving, for the `store_unavailable` message. */
  get reason(): string {
    if (this.#healthy && this.#id !== null && !this.#sweep.hasPrevious) {
      return 'the lock store (Redis) lost its state and is recovering; retry shortly';
    }
    if (this.#full) return "the lock store (Redis) is out of memory (its 'maxmemory') and refuses writes";
    if (this.#sweep.hasPrevious) {
      return 'this node lost contact with the lock store (Redis) and is dropping what it left there; retry shortly';
    }
    return 'the lock store (Redis) is unreachable';
  }

  /** Something suggests Redis lost its state: stop serving until a renew round has looked. */
  checkNow(): void {
    if (this.#closed) return;
    this.#unhealthy();
    this.#scheduleRenew(0);
  }

  /** Registers the node and starts its loops. */
  async start(): Promise<void> {
    // `stop()` waits for a first registration in flight as for a renew round's steps.
    const starting = (async () => {
      await this.#readRunIds();
      await this.#register();
    })();
    this.#starting = starting;
    try {
      await starting;
    } finally {
      this.#starting = null;
    }
    if (this.#closed) return;
    this.#healthy = true;
    this.#scheduleRenew(Math.floor(this.#o.ttl / 3));
    this.#sweep.scheduleCheck();
  }

  /**
   * Stops the loops and removes the node's liveness key and sentinels (its
   * sessions were closed before). A renew round in flight is waited for
   * first, each of its steps bounded by the link's command timeout: it
   * stops at its next step, but its replies must not come after the keys
   * are gone, where a renew answering 0 would look like a Redis that lost
   * its state (the holds abandoned, a holdoff set, a new id registered).
   *
   * With `handOver` (a closed session's drop never reached Redis) the
   * current id's registration and key set stay: the other nodes find the id
   * dead at their next check, as after a crash, and drop what its sessions
   * left. Removed, nobody would, and those locks would stay held for good.
   */
  async stop({ handOver = false }: { handOver?: boolean } = {}): Promise<void> {
    this.#closed = true;
    this.#clearTimer(this.#renewTimer);
    this.#sweep.stop();
    this.#clearTimer(this.#vouchTimer);
    // Their failures are handled, or start()'s to report: only their end matters here.
    await Promise.allSettled([this.#starting, this.#renewSteps]);
    const ids = [this.#id, this.#registering].filter((id): id is string => id !== null);
    if (ids.length === 0) return;
    const { link, names } = this.#o;
    const kept = handOver ? this.#id : null;
    await Promise.allSettled([
      ...ids.flatMap((id) => [
        link.command(names.node(id), ['DEL', names.node(id)]),
        ...(id === kept
          ? []
          : [link.command(names.nodes(), ['SREM', names.nodes(), id]), link.command(names.nodeKeys(id), ['DEL', names.nodeKeys(id)])]),
      ]),
      this.#sentinels?.drop(),
    ]);
  }

  /** Registers a new id; a node stopped meanwhile stops at its next step (`stop()` removes what it placed). */
  async #register(): Promise<void> {
    if (this.#closed) return;
    const { link, names } = this.#o;
    const previous = this.#id;
    const id = `${this.#o.baseId}.${++this.#incarnation}`;
    const clock = this.#clock;
    this.#registering = id;
    // The key's life counts from before the SET left; its value (when it registered) is for people to read.
    const sentAt = clock.monotonic();
    await link.command(names.node(id), ['SET', names.node(id), String(clock.now()), 'PX', String(this.keyTtl)]);
    if (this.#closed) return;
    await this.#sentinels?.register(id);
    if (this.#closed) return;
    await link.command(names.nodes(), ['SADD', names.nodes(), id]);
    if (this.#closed) return;
    const holdoff = Number(await link.command(names.holdoff(), ['PTTL', names.holdoff()]));
    if (this.#closed) return;
    if (holdoff > 0) this.#holdoffUntil = Math.max(this.#holdoffUntil, clock.monotonic() + holdoff);
    this.#id = id;
    this.#registering = null;
    this.#abandoned = false;
    if (previous !== null) this.#sweep.addPrevious(previous);
    this.#vouched(sentAt);
    await this.#o.hooks.registered(id, previous);
  }

  /** Tells the store it serves again (a reconciliation is due), once it does after it stopped. */
  #servingAgain(): void {
    if (!this.#recoverDue || !this.#healthy || this.#sweep.hasPrevious || this.#closed) return;
    this.#recoverDue = false;
    this.#o.hooks.recovered();
  }

  #unhealthy(): void {
    this.#healthy = false;
    this.#recoverDue = true;
  }

  /** A renew sent at `sentAt` (monotonic ms) succeeded: the node vouches until its key may expire. */
  #vouched(sentAt: number): void {
    this.#lastRenew = sentAt;
    this.#clearTimer(this.#vouchTimer);
    this.#vouchTimer = this.#clock.setTimeout(() => this.#unvouched(), Math.max(0, sentAt + this.keyTtl - this.#clock.monotonic()));
  }

  #unvouched(): void {
    if (this.#closed) return;
    // A clock's timers may fire a little early; wait out the rest rather than skip the check.
    const left = this.#lastRenew + this.keyTtl - this.#clock.monotonic();
    if (left > 0) {
      this.#vouchTimer = this.#clock.setTimeout(() => this.#unvouched(), left);
      return;
    }
    this.#giveUp();
  }

  #clearTimer(timer: TimerHandle | undefined): void {
    if (timer !== undefined) this.#clock.clearTimeout(timer);
  }

  /** Gives up the locks and requests of the node's current id: each is reported lost or failed. */
  #giveUp(): void {
    this.#o.logger.warn({ node: this.#id }, 'lost contact with Redis for the node TTL: locks on this node are revoked');
    this.#unhealthy();
    this.#abandoned = true;
    this.#o.hooks.abandon('unvouched');
  }

  #trouble(): void {
    if (this.#closed) return;
    this.#unhealthy();
    this.#scheduleRenew(0);
  }

  #scheduleRenew(delay: number): void {
    if (this.#closed) return;
    this.#clearTimer(this.#renewTimer);
    this.#renewTimer = this.#clock.setTimeout(() => void this.#renew(), delay);
  }

  /**
   * One renew round: detects a lost state, renews, re-registers when needed,
   * schedules the next round, then starts housekeeping beside it. The next
   * round is never held back by housekeeping: each of its calls may take the
   * command timeout (a stalled primary that does not hold the liveness key),
   * which is not bound to the node TTL, and the key would expire meanwhile.
   */
  async #renew(): Promise<void> {
    if (this.#renewing) return this.#renewing;
    this.#renewing = (async () => {
      this.#renewSteps = this.#checkAndRenew();
      const renewed = await this.#renewSteps.finally(() => {
        this.#renewSteps = null;
      });
      if (!renewed || this.#closed) return;
      this.#scheduleRenew(Math.floor(this.#o.ttl / 3));
      this.#startHousekeeping();
    })().finally(() => {
      this.#renewing = null;
    });
    return this.#renewing;
  }

  /** Starts housekeeping after a round that renewed, unless the last one still runs (the next round starts it then). */
  #startHousekeeping(): void {
    if (this.#housekeeping || this.#closed) return;
    // Housekeeping that fails (e.g. a drop refused by a Redis out of memory) is tried again next round;
    // the node renewed, so it keeps serving.
    this.#housekeeping = this.#o.hooks
      .tick()
      .catch((error: unknown) => this.#o.logger.debug({ err: String(error) }, 'housekeeping failed'))
      .finally(() => {
        this.#housekeeping = null;
      });
  }

  /**
   * A renew round's checks and renews: true when the node serves again
   * under its id (renewed, or registered anew), false when the round failed
   * (the next one is scheduled) or the node stopped meanwhile (it stops at
   * its next step, and neither abandons nor registers anything).
   */
  async #checkAndRenew(): Promise<boolean> {
    if (this.#closed) return false;
    const { link, names } = this.#o;
    try {
      // A primary flushed leaves its run_id as it was: on a cluster its sentinel tells.
      const [restarted, flushed] = await Promise.all([this.#readRunIds(), this.#sentinels?.check() ?? false]);
      if (this.#closed) return false;
      const sentAt = this.#clock.monotonic();
      const id = this.#id;
      // A node that abandoned its locks takes a new id even when its key
      // survived (its renews ran but their replies came too late). PEXPIRE
      // answers 0 for a key that is gone, and a Redis out of memory does
      // not refuse it (it refuses a SET): a full Redis still keeps every
      // lock, and its nodes keep vouching for them.
      let renewed = false;
      if (!flushed && id !== null && !this.#abandoned) {
        renewed = Number(await link.command(names.node(id), ['PEXPIRE', names.node(id), String(this.keyTtl)])) === 1;
        // Stopped meanwhile, the node may have removed the key itself.
        if (this.#closed) return false;
        renewed &&= !this.#abandoned;
      }
      const vouching = !this.#abandoned && sentAt - this.#lastRenew < this.keyTtl;
      if (restarted || flushed || (!renewed && vouching && id !== null)) {
        await this.#stateLost();
      } else if (!renewed) {
        // Past its vouching time: its vouch timer may not have fired yet, and the new id must not inherit its holds.
        if (!this.#abandoned) this.#giveUp();
        await this.#register();
      } else {
        this.#vouched(sentAt);
      }
      if (this.#closed) return false;
      this.#healthy = true;
      this.#full = false;
      this.#sweep.retireSoon();
      this.#servingAgain();
      return true;
    } catch (error) {
      this.#unhealthy();
      this.#full = /^OOM /.test(error instanceof Error ? error.message : String(error));
      this.#o.logger.debug({ err: String(error) }, 'Redis unreachable; retrying');
      this.#scheduleRenew(Math.min(200, Math.floor(this.#o.ttl / 10)));
      return false;
    }
  }

  async #stateLost(): Promise<void> {
    // A node that stopped removed its keys itself: their absence tells nothing.
    if (this.#closed) return;
    this.#unhealthy();
    this.#abandoned = true;
    const { link, names, ttl, logger } = this.#o;
    logger.warn({ node: this.#id }, 'Redis lost its state: every lock held through this node is revoked');
    this.#o.hooks.abandon('state_lost');
    this.#holdoffUntil = this.#clock.monotonic() + ttl;
    await link.command(names.holdoff(), ['SET', names.holdoff(), '1', 'PX', String(ttl)]);
    if (this.#closed) return;
    await this.#register();
  }

  /** Reads every primary's run_id; true when one changed (it restarted, without its data unless persisted). */
  async #readRunIds(): Promise<boolean> {
    let restarted = false;
    const shards = await this.#o.link.shards();
    await Promise.all(
      shards.map(async (shard) => {
        const info = String(await shard.command(['INFO', 'server']));
        const runId = /run_id:([0-9a-f]+)/.exec(info)?.[1];
        if (runId === undefined) return;
        const known = this.#runIds.get(shard.address);
        if (known !== undefined && known !== runId) restarted = true;
        this.#runIds.set(shard.address, runId);
      }),
    );
    return restarted;
  }
}
