import { randomBytes } from 'node:crypto';
import { DEFAULT_LIMITS, type ListResult, type LockStatus } from '@lockwire/protocol';
import { systemClock } from '../clock.js';
import { silentLogger } from '../logger.js';
import type {
  AcquireInput,
  AcquireOutcome,
  LockEvent,
  LockStore,
  SessionEnd,
  SessionId,
  StoreLimits,
  StoreListener,
  StoreReadiness,
  Ticket,
  WaitInput,
  WatchHandle,
} from '../store.js';
import { BatchSequencer } from './batch-sequencer.js';
import { databaseOfUrl, decodeKey, encodeKey, keyNames } from './key-codec.js';
import { LocalTable } from './local-table.js';
import { LockRequests } from './lock-requests.js';
import { NodeKeySet } from './node-key-set.js';
import { NodeLiveness } from './node-liveness.js';
import { NoteSettler } from './note-settler.js';
import { clockBeforeSubscribe, PubSubIntake } from './pubsub-intake.js';
import { ReadFence } from './read-fence.js';
import { Reconciler } from './reconciler.js';
import { connectRedis } from './redis-link.js';
import { SessionCleanup } from './session-cleanup.js';
import { StepRunner } from './step-runner.js';
import { DEFAULT_GAP_WAIT, DEFAULT_NODE_TTL, timeScripts, type RedisStoreOptions } from './store-options.js';
import type { StoreContext } from './store-context.js';
import { SyncBarrier } from './sync-barrier.js';
import { TableReader } from './table-reader.js';
import { Timeouts } from './timeouts.js';
import { WatchHub } from './watch-hub.js';
import { WatchRepair } from './watch-repair.js';

export { DEFAULT_NODE_TTL, type RedisStoreOptions } from './store-options.js';

/**
 * The lock table in Redis, shared by every lockwire node that points at the
 * same Redis and namespace; one store is one node. Semantics are the memory
 * store's. Every change is one Lua script over the keys of one lock key (one
 * hash slot); grants to sessions of other nodes are pushed over pub/sub.
 * See `docs/scaling.md`.
 *
 * Calls fail with `store_unavailable` while Redis cannot be reached, and
 * acquires also while the node recovers from a Redis that lost its state.
 */
export function createRedisStore(options: RedisStoreOptions): LockStore {
  return new RedisStore(options);
}

/**
 * The facade: composes the parts (see their files) and hands each call to
 * the one that owns it. Every part reads the connection from one shared
 * `StoreContext`, which `start` fills in.
 */
class RedisStore implements LockStore {
  readonly kind = 'redis';
  readonly limits: Readonly<StoreLimits>;
  readonly #options: RedisStoreOptions;
  readonly #ctx: StoreContext;
  readonly #hub = new WatchHub();
  readonly #table: LocalTable;
  readonly #keySet: NodeKeySet;
  readonly #reconciler: Reconciler;
  readonly #timeouts: Timeouts;
  readonly #notes: NoteSettler;
  readonly #requests: LockRequests;
  readonly #cleanup: SessionCleanup;
  readonly #barrier: SyncBarrier;
  readonly #intake: PubSubIntake;
  readonly #reader: TableReader;
  readonly #repair: WatchRepair;
  readonly #fence: ReadFence;

  constructor(options: RedisStoreOptions) {
    this.#options = options;
    const names = keyNames(options.namespace ?? 'lw', options.cluster ? 0 : databaseOfUrl(options.url));
    const limits: StoreLimits = {
      maxLocksPerSession: options.limits?.maxLocksPerSession ?? DEFAULT_LIMITS.maxLocksPerSession,
      maxWaitersPerKey: options.limits?.maxWaitersPerKey ?? DEFAULT_LIMITS.maxWaitersPerKey,
    };
    this.limits = limits;
    const ctx: StoreContext = {
      clock: options.clock ?? systemClock,
      logger: options.logger ?? silentLogger,
      limits,
      names,
      namespace: names.channelPrefix(),
      link: null,
      liveness: null,
      sequencer: null,
      listener: null,
      closing: null,
    };
    this.#ctx = ctx;
    // The table arms a new hold's timer through the timeouts, which need the table: bound late.
    const table = new LocalTable(ctx.clock, (hold, due) => this.#timeouts.armHold(hold, due));
    this.#table = table;
    this.#keySet = new NodeKeySet(ctx.names);
    const steps = new StepRunner({
      ctx,
      keySet: this.#keySet,
      watched: (key) => this.#hub.covers(key),
      reconcileSoon: () => this.#reconciler.reconcileSoon(),
      runDue: (key) => void this.#timeouts.runDue(key),
    });
    this.#reconciler = new Reconciler(ctx, table, steps);
    this.#timeouts = new Timeouts(ctx, table, steps, this.#reconciler);
    this.#notes = new NoteSettler(ctx, table, () => this.#reconciler.reconcileSoon());
    this.#fence = new ReadFence({ steps, ctx, table, notes: this.#notes, reconcileSoon: () => this.#reconciler.reconcileSoon() });
    this.#requests = new LockRequests({
      ctx,
      table,
      steps,
      timeouts: this.#timeouts,
      notes: this.#notes,
      reconciler: this.#reconciler,
    });
    this.#cleanup = new SessionCleanup(ctx, table, steps, (key) => this.#timeouts.runDue(key));
    this.#barrier = new SyncBarrier({
      ctx,
      timeout: options.commandTimeout ?? 2000,
      settled: () => this.#reconciler.settled(),
    });
    this.#intake = new PubSubIntake({ ctx, hub: this.#hub, notes: this.#notes, barrier: this.#barrier, reconciler: this.#reconciler });
    this.#reader = new TableReader(ctx);
    this.#repair = new WatchRepair(ctx, this.#hub, this.#reader);
  }

  async start(listener: StoreListener): Promise<void> {
    const ctx = this.#ctx;
    ctx.listener = listener;
    const ttl = this.#options.nodeTtl ?? DEFAULT_NODE_TTL;
    const link = timeScripts(
      await connectRedis({
        url: this.#options.url,
        cluster: this.#options.cluster ?? false,
        tls: this.#options.tls,
        connections: this.#options.connections,
        commandTimeout: this.#options.commandTimeout ?? 2000,
        reconnectDelay: Math.max(20, Math.min(200, Math.floor(ttl / 10))),
        // Heartbeats come every third of the node TTL; three missed ones mean a dead path.
        subscriberIdleTimeout: Math.max(1000, ttl),
        // As often as the sweep for dead nodes runs: a connection carrying only some keys' commands may
        // otherwise stay idle past Redis' `timeout` setting, which closes it.
        keepAlive: Math.max(50, Math.floor(ttl / 10)),
      }),
      this.#options.observeScript,
    );
    ctx.link = link;
    // Read before the broadcast channel is subscribed: a step below it was never to be heard here.
    const heardSince = await clockBeforeSubscribe(link, ctx.logger);
    ctx.sequencer = new BatchSequencer({
      node: () => ctx.liveness?.currentId ?? '',
      deliver: (batch, withEvents) => {
        // A broadcast of this node's own step reaches here only when the step's call failed.
        if (withEvents && batch.origin !== undefined && batch.origin === ctx.liveness?.currentId) this.#notes.settleOwnFailed(batch);
        this.#intake.deliver(batch, withEvents);
      },
      gapWait: this.#options.gapWait ?? DEFAULT_GAP_WAIT,
      heardSince,
      // The missing step's events never reached the key's watchers, or came after a later step's.
      gaveUp: (encoded) => this.#repair.key(decodeKey(encoded)),
    });
    const liveness = new NodeLiveness({
      link,
      names: ctx.names,
      baseId: randomBytes(6).toString('base64url'),
      ttl,
      logger: ctx.logger,
      hooks: {
        registered: (id, previous) => this.#onRegistered(id, previous),
        abandon: (cause) => this.#cleanup.abandon(cause),
        recovered: () => {
          void this.#reconciler.reconcile();
          // Cut off from Redis, the node may have missed broadcasts; should its subscriber be
          // back only later, its resubscribe catches the watchers up once more.
          this.#repair.all();
        },
        tick: () => this.#housekeeping(),
        cleanupDeadNode: (id) => this.#cleanup.cleanupDeadNode(id),
      },
    });
    ctx.liveness = liveness;
    link.on('resubscribed', () => {
      // Reconcile first: a sync retrying its marker now waits for this run.
      this.#reconciler.reconcileSoon();
      this.#barrier.resubscribed();
      // Broadcasts published while the connection was down are gone: watchers catch up from a read.
      this.#repair.all();
    });
    await link.subscribe(ctx.names.eventChannel(), (message) => this.#intake.onBroadcast(message));
    await liveness.start();
  }

  /**
   * Ready while the node serves (see `NodeLiveness#serving`): read from what
   * its renew rounds found, never from a command of its own, so Redis going
   * away shows at the latest one failed renew round later (a third of the
   * node TTL, plus the command timeout), and at once when the connection reports it.
   */
  readiness(): StoreReadiness {
    const liveness = this.#ctx.liveness;
    if (this.#ctx.closing) return { ready: false, reason: 'the Redis store is closing' };
    if (!liveness) return { ready: false, reason: 'the Redis store is not started' };
    return liveness.serving ? { ready: true } : { ready: false, reason: liveness.reason };
  }

  acquire(session: SessionId, input: AcquireInput): Promise<AcquireOutcome> {
    // Most acquires start their step at once, which reads wait for already (`StepRunner#busy`). One that
    // first waits (for a cancel of the key, or to clear an uncertain acquire) is tracked whole, so reads
    // wait for all of it; the common acquire pays nothing for that.
    const waits = this.#requests.waitsBeforeStep(session, input.key);
    const call = this.#requests.acquire(session, input);
    return waits ? this.#fence.track(input.key, call) : call;
  }

  release(session: SessionId, key: string): Promise<void> {
    return this.#requests.release(session, key);
  }

  extend(session: SessionId, key: string, holdTimeout: number | null): Promise<number | null> {
    return this.#requests.extend(session, key, holdTimeout);
  }

  wait(session: SessionId, input: WaitInput): Promise<'free' | 'pending'> {
    return this.#requests.wait(session, input);
  }

  cancel(session: SessionId, ticket: Ticket): Promise<boolean> {
    const key = this.#table.tickets.get(ticket)?.key;
    const call = this.#requests.cancel(session, ticket);
    // Its step waits for the answer of the request it cancels: reads of the key wait for all of it.
    return key === undefined ? call : this.#fence.track(key, call);
  }

  /**
   * Read after this node's writes in flight on the key, so a session sees its own requests; answered once this node
   * heard every step of the key the read shows, after a `lost` of a viewer's hold it shows gone unheard (see `ReadFence`).
   */
  async status(key: string, viewer: SessionId | null): Promise<LockStatus> {
    // What of the key is due here but has not run yet runs first (see `Timeouts#runDue`): the fence waits for its steps.
    void this.#timeouts.runDue(key);
    const settling = this.#fence.key(key);
    if (settling) await settling;
    // Taken as the read is sent: a hold recorded after it may be newer than what the read shows.
    const held = this.#fence.heldAt(viewer, key);
    const read = await this.#reader.readStatus(key, viewer);
    const behind = this.#fence.heard([{ key, ...read }], held);
    if (behind) await behind;
    return read.status;
  }

  /** Read after this node's writes in flight under the prefix, and answered as `status` is for each key it read (see `ReadFence#listed`). */
  async list(prefix: string, limit: number, viewer: SessionId | null): Promise<ListResult> {
    // What of this node under the prefix is due but has not run yet runs first, as for `status`.
    this.#timeouts.runDueUnder(prefix);
    const settling = this.#fence.prefix(prefix);
    if (settling) await settling;
    const held = this.#fence.heldUnder(viewer, prefix);
    const taken = await this.#reader.snapshot(prefix, limit, viewer);
    const behind = this.#fence.listed(taken, prefix, viewer, held);
    if (behind) await behind;
    return taken.result;
  }

  /** The snapshot is read after this node's writes in flight under the prefix when the watch came (see `ReadFence`). */
  async watch(prefix: string, limit: number, viewer: SessionId | null, sink: (event: LockEvent) => void): Promise<WatchHandle> {
    this.#timeouts.runDueUnder(prefix);
    const settling = this.#fence.prefix(prefix);
    return this.#hub.watch(
      prefix,
      limit,
      sink,
      async () => {
        if (settling) await settling;
        return this.#reader.snapshot(prefix, limit, viewer);
      },
      (key, version) => this.#ctx.sequencer?.seed(encodeKey(key), version),
      // Events and notes travel on the pub/sub connection: those of steps before the snapshot's reads
      // are heard behind a barrier, so the snapshot, unlike `list`, needs no `ReadFence#listed`.
      () => this.#barrier.sync((key) => key.startsWith(prefix)),
    );
  }

  revoke(key: string): Promise<number> {
    return this.#requests.revoke(key);
  }

  closeSession(session: SessionId, end?: SessionEnd): Promise<void> {
    return this.#cleanup.closeSession(session, end);
  }

  /** See `SyncBarrier#sync`. */
  sync(session: SessionId): Promise<void> {
    const local = this.#table.sessions.get(session);
    // A batch held for a missing predecessor is waited for only when its key
    // is one this session holds or waits for, or one a watch here covers:
    // other keys' late batches owe this session nothing.
    return this.#barrier.sync((key) => {
      if (this.#hub.covers(key)) return true;
      if (!local) return false;
      if (local.holds.has(key)) return true;
      for (const pending of local.pending.values()) if (pending.key === key) return true;
      return false;
    });
  }

  close(): Promise<void> {
    const ctx = this.#ctx;
    ctx.closing ??= (async () => {
      this.#barrier.release();
      for (const session of [...this.#table.sessions.keys()]) {
        await this.closeSession(session).catch(() => {});
      }
      // One more try for closed sessions whose drop failed; what is still left then goes to the other nodes.
      await this.#cleanup.retryOrphans().catch(() => {});
      await ctx.liveness?.stop({ handOver: this.#cleanup.hasOrphans });
      ctx.sequencer?.close();
      this.#hub.clear();
      await ctx.link?.close();
    })();
    return ctx.closing;
  }

  // ---- node lifecycle (called by NodeLiveness) ----

  async #onRegistered(id: string, previous: string | null): Promise<void> {
    const link = this.#ctx.link;
    if (!link) return;
    this.#keySet.clear();
    if (previous !== null) await link.unsubscribe(this.#ctx.names.nodeChannel(previous)).catch(() => {});
    await link.subscribe(this.#ctx.names.nodeChannel(id), (message) => this.#intake.onMessage(message));
  }

  /**
   * After each renew round, beside the next ones (see `NodeLivenessHooks#tick`): checks the pub/sub path with a heartbeat (one that
   * did not come back also catches the watchers up), retries
   * closing sessions that failed to close, and trims the node's key set.
   */
  async #housekeeping(): Promise<void> {
    // A heartbeat that did not come back: broadcasts may have been lost on a silent path too.
    if (this.#ctx.link && this.#ctx.liveness && this.#reconciler.heartbeatMissed) this.#repair.all();
    await this.#reconciler.beat();
    await this.#cleanup.retryOrphans();
    const { link, liveness } = this.#ctx;
    if (!link || !liveness) return;
    await this.#keySet.trim(link, liveness.id, this.#cleanup.keysInUse());
  }
}
