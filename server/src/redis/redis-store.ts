import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { DEFAULT_LIMITS, ErrorCode, MAX_DURATION_MS, type ListResult, type LockStatus } from '@lockwire/protocol';
import { systemClock, type Clock } from '../clock.js';
import { LockError, badRequest, notHolder } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import type {
  AcquireInput,
  AcquireOutcome,
  LockEvent,
  LockStore,
  SessionId,
  StoreLimits,
  StoreListener,
  Ticket,
  WaitInput,
  WatchHandle,
} from '../store.js';
import { BatchSequencer } from './batch-sequencer.js';
import { decodeKey, encodeKey, keyNames, type KeyNames } from './key-codec.js';
import { createLocalSession, createPending, keysOf, type LocalHold, type LocalPending, type LocalSession } from './local-state.js';
import { NodeLiveness, type AbandonCause } from './node-liveness.js';
import {
  arr,
  expiresAtOf,
  num,
  obj,
  parseBatch,
  parseBroadcast,
  parseJson,
  parseStatus,
  readBroadcastHead,
  str,
  type Batch,
  type Json,
  type Note,
} from './records.js';
import { connectRedis, type RedisLink } from './redis-link.js';
import { scripts, type ScriptName } from './scripts.js';
import { WatchHub } from './watch-hub.js';

export interface RedisStoreOptions {
  /** `redis://host:port`; with `cluster`, one or more cluster nodes, comma-separated. */
  url: string;
  /** Connect to a Redis Cluster instead of a single server. Default false. */
  cluster?: boolean;
  /** Prefix of every Redis key and channel; nodes sharing a table use the same one. Default `lw`. */
  namespace?: string;
  /**
   * ms within which the survivors release the locks of a dead node, and after
   * which a node cut off from Redis reports its holders' locks lost. Default 5000.
   */
  nodeTtl?: number;
  /** ms a Redis command may take before the call fails with `store_unavailable`. Default 2000. */
  commandTimeout?: number;
  /** Clock of hold, acquire and wait timeouts (node liveness runs on real time). Default the system clock. */
  clock?: Clock;
  limits?: Partial<StoreLimits>;
  logger?: Logger;
  /**
   * Called after every Lua script call with the script's name, its duration
   * in seconds and whether it succeeded; e.g. `LockMetrics#observeScript`.
   */
  observeScript?: (name: string, seconds: number, ok: boolean) => void;
}

/** What a node publishes to its own channel to check that pub/sub reaches it. */
const HEARTBEAT = 'hb';

/** Start of a barrier a node publishes to its own channel (`sync` then its number). */
const BARRIER = 'sync ';

/** The default node TTL in ms. */
export const DEFAULT_NODE_TTL = 5000;

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

class RedisStore implements LockStore {
  readonly kind = 'redis';
  readonly #options: RedisStoreOptions;
  readonly #clock: Clock;
  readonly #limits: StoreLimits;
  readonly #logger: Logger;
  readonly #names: KeyNames;
  readonly #namespace: string;
  readonly #sessions = new Map<SessionId, LocalSession>();
  readonly #tickets = new Map<Ticket, LocalPending>();
  /** Encoded keys recorded in this node's key set, with the SADD that recorded them. */
  readonly #registered = new Map<string, Promise<void>>();
  /** Keys to record with the SADD of the current tick. */
  #registering: { node: string; keys: string[]; done: Promise<void> } | null = null;
  readonly #orphans = new Map<SessionId, Set<string>>();
  readonly #hub = new WatchHub();
  #link: RedisLink | null = null;
  #liveness: NodeLiveness | null = null;
  #sequencer: BatchSequencer | null = null;
  #listener: StoreListener | null = null;
  #calls = 0;
  #reconciling: Promise<void> | null = null;
  /**
   * Steps of this node in flight per key, from their call until their reply
   * was applied: Redis is ahead of this node's view of the key meanwhile.
   */
  readonly #steps = new Map<string, number>();
  /** The last heartbeat this node published to its own channel, and whether it came back. */
  #heartbeat: { sent: boolean; heard: boolean } = { sent: false, heard: false };
  #reconcileAgain = false;
  #closing: Promise<void> | null = null;
  /** Barriers published to this node's own channel that have not come back, by number. */
  readonly #barriers = new Map<number, () => void>();
  #barrierCount = 0;

  constructor(options: RedisStoreOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#namespace = options.namespace ?? 'lw';
    this.#names = keyNames(this.#namespace);
    this.#limits = {
      maxLocksPerSession: options.limits?.maxLocksPerSession ?? DEFAULT_LIMITS.maxLocksPerSession,
      maxWaitersPerKey: options.limits?.maxWaitersPerKey ?? DEFAULT_LIMITS.maxWaitersPerKey,
    };
  }

  async start(listener: StoreListener): Promise<void> {
    this.#listener = listener;
    const ttl = this.#options.nodeTtl ?? DEFAULT_NODE_TTL;
    const link = timeScripts(
      await connectRedis({
        url: this.#options.url,
        cluster: this.#options.cluster ?? false,
        commandTimeout: this.#options.commandTimeout ?? 2000,
        reconnectDelay: Math.max(20, Math.min(200, Math.floor(ttl / 10))),
        // Heartbeats come every third of the node TTL; three missed ones mean a dead path.
        subscriberIdleTimeout: Math.max(1000, ttl),
      }),
      this.#options.observeScript,
    );
    this.#link = link;
    this.#sequencer = new BatchSequencer({
      node: () => this.#liveness?.id ?? '',
      deliver: (batch, withEvents) => this.#deliver(batch, withEvents),
      gapWait: 500,
    });
    this.#liveness = new NodeLiveness({
      link,
      names: this.#names,
      baseId: randomBytes(6).toString('base64url'),
      ttl,
      logger: this.#logger,
      hooks: {
        registered: (id, previous) => this.#onRegistered(id, previous),
        abandon: (cause) => this.#abandon(cause),
        recovered: () => void this.#reconcile(),
        tick: () => this.#housekeeping(),
        cleanupDeadNode: (id) => this.#cleanupDeadNode(id),
      },
    });
    link.on('resubscribed', () => void this.#reconcile());
    await link.subscribe(this.#names.eventChannel(), (message) => this.#onBroadcast(message));
    await this.#liveness.start();
  }

  async acquire(session: SessionId, input: AcquireInput): Promise<AcquireOutcome> {
    const { ticket, key, mode, acquireTimeout, holdTimeout, steal } = input;
    checkDuration('acquireTimeout', acquireTimeout);
    checkDuration('holdTimeout', holdTimeout);
    if (steal && mode !== 'exclusive') throw badRequest('steal: only an exclusive acquire can steal');
    if (steal && acquireTimeout === 0) throw badRequest('steal: cannot be combined with acquireTimeout 0');
    const liveness = this.#live();
    if (!liveness.serving) throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
    const local = this.#session(session);
    const full = local.holds.size + local.acquiring >= this.#limits.maxLocksPerSession;
    const pending = createPending(ticket, session, key, 'acquire');
    this.#addPending(local, pending);
    // The timeout runs from the request's arrival, as in memory, even while its script is in flight.
    if (acquireTimeout !== null && acquireTimeout > 0) this.#armTimeout(pending, acquireTimeout);
    try {
      return await this.#step(
        'acquire',
        key,
        [
          session,
          String(ticket),
          mode,
          durationArg(acquireTimeout),
          durationArg(holdTimeout),
          steal ? '1' : '0',
          input.meta === null ? '' : JSON.stringify(input.meta),
          full ? '1' : '0',
          String(this.#limits.maxWaitersPerKey),
        ],
        (r, at): AcquireOutcome => {
          // `lost` notes of steps Redis ran before this one come before its answer.
          this.#settleEarly(pending, at);
          const st = str(r, 'st');
          if (st === 'queued') return { status: 'queued', position: num(r, 'p') };
          this.#removePending(pending);
          if (st === 'granted') {
            const grant = { key, token: Number(str(r, 't')), expiresAt: expiresAtOf(str(r, 'x')) };
            const had = local.holds.get(key);
            if (this.#sessions.get(session) === local && had?.token !== grant.token) {
              // A hold this node still knows under another token ended unheard (a late message): it is lost.
              if (had) {
                this.#dropHold(had);
                this.#listener?.lost(session, { key, token: had.token, reason: 'revoked' });
              }
              this.#addHold(local, session, grant);
            }
            return { status: 'granted', ...grant };
          }
          if (st === 'not_granted') return { status: 'not_granted' };
          if (str(r, 'err') === 'lost_state') {
            liveness.checkNow();
            throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
          }
          throw acquireError(r, key, this.#limits);
        },
        () => {
          this.#removePending(pending);
          local.dirty.add(key);
        },
      );
    } finally {
      this.#sent(pending);
    }
  }

  async release(session: SessionId, key: string): Promise<void> {
    await this.#step('release', key, [session], (r) => {
      if (str(r, 'err') !== '') throw notHolder(key);
      this.#dropHold(this.#sessions.get(session)?.holds.get(key));
    });
  }

  async extend(session: SessionId, key: string, holdTimeout: number | null): Promise<number | null> {
    checkDuration('holdTimeout', holdTimeout);
    return this.#step('extend', key, [session, durationArg(holdTimeout)], (r) => {
      if (str(r, 'err') !== '') throw notHolder(key);
      const expiresAt = expiresAtOf(str(r, 'x'));
      const local = this.#sessions.get(session);
      const hold = local?.holds.get(key);
      if (hold) {
        hold.expiresAt = expiresAt;
        this.#armHold(hold);
      } else if (local) {
        this.#addHold(local, session, { key, token: Number(str(r, 't')), expiresAt });
      }
      return expiresAt;
    });
  }

  async wait(session: SessionId, input: WaitInput): Promise<'free' | 'pending'> {
    checkDuration('timeout', input.timeout);
    const local = this.#session(session);
    const pending = createPending(input.ticket, session, input.key, 'wait');
    this.#addPending(local, pending);
    if (input.timeout !== null) this.#armTimeout(pending, input.timeout);
    try {
      return await this.#step(
        'wait',
        input.key,
        [session, String(input.ticket)],
        (r) => {
          if (str(r, 'free') !== '') {
            this.#removePending(pending);
            return 'free' as const;
          }
          return 'pending' as const;
        },
        () => {
          this.#removePending(pending);
          local.dirty.add(input.key);
        },
      );
    } finally {
      this.#sent(pending);
    }
  }

  async cancel(session: SessionId, ticket: Ticket): Promise<boolean> {
    const pending = this.#tickets.get(ticket);
    if (!pending || pending.session !== session) return false;
    await pending.sent;
    if (this.#tickets.get(ticket) !== pending) return false;
    return this.#unqueue(pending, () => {});
  }

  async status(key: string, viewer: SessionId | null): Promise<LockStatus> {
    return (await this.#readStatus(key, viewer)).status;
  }

  async list(prefix: string, limit: number, viewer: SessionId | null): Promise<ListResult> {
    return (await this.#snapshot(prefix, limit, viewer)).result;
  }

  async watch(prefix: string, limit: number, viewer: SessionId | null, sink: (event: LockEvent) => void): Promise<WatchHandle> {
    return this.#hub.watch(
      prefix,
      sink,
      () => this.#snapshot(prefix, limit, viewer),
      (key, version) => this.#sequencer?.seed(encodeKey(key), version),
    );
  }

  async revoke(key: string): Promise<number> {
    return this.#step('revoke', key, [], (r) => num(r, 'n'));
  }

  async closeSession(session: SessionId): Promise<void> {
    const local = this.#sessions.get(session);
    if (!local) return;
    this.#sessions.delete(session);
    const queued = new Set<string>(local.dirty);
    // An acquire still in flight may turn into a hold: release its key too.
    const held = new Set<string>(local.dirty);
    for (const pending of local.pending.values()) {
      queued.add(pending.key);
      if (pending.kind === 'acquire') held.add(pending.key);
      this.#clearTimer(pending);
      this.#tickets.delete(pending.ticket);
    }
    for (const hold of local.holds.values()) {
      held.add(hold.key);
      this.#clearTimer(hold);
    }
    await this.#dropSession(session, queued, held);
  }

  /**
   * A barrier: publishes a marker to this node's own channel and waits until
   * it comes back. Redis sends a node's messages in the order it ran the
   * steps, so every note of a step Redis ran before the marker has then
   * arrived; the wait ends once those are delivered too (a batch held for a
   * missing predecessor, a note held for an answer in flight). Gives up after
   * the command timeout, and at once when the node's channel has no
   * subscriber (notes published meanwhile were missed; reconciling finds them).
   */
  async sync(): Promise<void> {
    const link = this.#link;
    const liveness = this.#liveness;
    const sequencer = this.#sequencer;
    if (!link || !liveness || !sequencer || this.#closing) return;
    const n = ++this.#barrierCount;
    const back = new Promise<void>((resolve) => this.#barriers.set(n, resolve));
    const timer = setTimeout(() => this.#passBarriers(n), this.#options.commandTimeout ?? 2000);
    timer.unref?.();
    try {
      const channel = this.#names.nodeChannel(liveness.id);
      if (Number(await link.command(channel, ['PUBLISH', channel, `${BARRIER}${n}`])) === 0) this.#passBarriers(n);
    } catch {
      this.#passBarriers(n);
    }
    await back;
    clearTimeout(timer);
    await sequencer.heard();
    // Notes held for a request's answer go out right after it, in a `setImmediate` (see `#sent`).
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /** Barriers up to `n` came back (messages keep their order), or are given up on. */
  #passBarriers(n: number): void {
    for (const [number, pass] of this.#barriers) {
      if (number > n) continue;
      this.#barriers.delete(number);
      pass();
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#passBarriers(Infinity);
      for (const session of [...this.#sessions.keys()]) {
        await this.closeSession(session).catch(() => {});
      }
      await this.#liveness?.stop();
      this.#sequencer?.close();
      this.#hub.clear();
      await this.#link?.close();
    })();
    return this.#closing;
  }

  // ---- steps ----

  #live(): NodeLiveness {
    if (!this.#liveness) throw new LockError(ErrorCode.StoreUnavailable, 'the Redis store is not started');
    return this.#liveness;
  }

  /**
   * Runs one state-changing script on `key`, hands its result to `apply`
   * (which updates this node's view and answers), then delivers the step's
   * batch. `apply` runs once this node has applied every earlier step of the
   * key (a note of one, e.g. the `lost` of a steal, comes before this answer),
   * or after a bounded wait for a late message, when this node then
   * reconciles. It gets the key's version before the step: notes of batches
   * at or below it come from steps Redis ran earlier. A Redis failure calls
   * `failed` and throws `store_unavailable`.
   */
  async #step<T>(
    name: ScriptName,
    key: string,
    extra: string[],
    apply: (result: Json, at: number) => T,
    failed?: () => void,
  ): Promise<T> {
    const link = this.#link;
    const sequencer = this.#sequencer;
    const liveness = this.#live();
    if (!link || !sequencer) throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
    const encoded = encodeKey(key);
    const call = String(++this.#calls);
    const node = liveness.id;
    sequencer.beginCall(call);
    this.#steps.set(key, (this.#steps.get(key) ?? 0) + 1);
    let reply: Json;
    let batch: Batch;
    try {
      await this.#register(encoded, node);
      reply = parseJson(
        await link.evalScript(scripts[name], this.#scriptKeys(name, encoded, node), [
          node,
          call,
          String(Math.floor(this.#clock.now())),
          encoded,
          this.#namespace,
          ...extra,
        ]),
      );
      batch = parseBatch(reply);
    } catch (error) {
      this.#stepDone(key);
      sequencer.endCall(call, null);
      failed?.();
      this.#logger.debug({ err: String(error), script: name }, 'Redis call failed');
      throw new LockError(ErrorCode.StoreUnavailable, `${liveness.reason}: ${String(error)}`);
    }
    const at = batch.v > 0 ? batch.pv : Number(str(reply, 'cv'));
    const ready = sequencer.reach(encoded, at, !this.#hub.covers(key));
    const late = ready !== true && !(await ready);
    try {
      return apply(obj(reply.r), at);
    } finally {
      this.#stepDone(key);
      sequencer.endCall(call, batch);
      if (late) {
        this.#logger.debug({ key, script: name }, 'an earlier step of the key was not heard in time; reconciling');
        this.#reconcileSoon();
      }
    }
  }

  #stepDone(key: string): void {
    const left = (this.#steps.get(key) ?? 1) - 1;
    if (left > 0) this.#steps.set(key, left);
    else this.#steps.delete(key);
  }

  /** A script's keys: the lock key's five, plus the caller's liveness key for an acquire on a single server. */
  #scriptKeys(name: ScriptName, encoded: string, node: string): string[] {
    const keys: string[] = this.#names.lockKeys(encoded);
    if (name === 'acquire' && this.#link?.mode === 'single') keys.push(this.#names.node(node));
    return keys;
  }

  /**
   * Records the key in this node's key set before anything of the node can be
   * in it. The keys first used within one tick go out in one SADD, sent
   * before any of their scripts.
   */
  #register(encoded: string, node: string): Promise<void> {
    // Every step of a key awaits the same promise, so steps of one key keep their order.
    const known = this.#registered.get(encoded);
    if (known) return known;
    const link = this.#link;
    if (!link) return Promise.resolve();
    let batch = this.#registering;
    if (batch === null || batch.node !== node) {
      batch = this.#openRegistration(link, node);
    }
    batch.keys.push(encoded);
    this.#registered.set(encoded, batch.done);
    return batch.done;
  }

  #openRegistration(link: RedisLink, node: string): { node: string; keys: string[]; done: Promise<void> } {
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

  async #readStatus(key: string, viewer: SessionId | null): Promise<{ status: LockStatus; version: number }> {
    const link = this.#link;
    if (!link) throw new LockError(ErrorCode.StoreUnavailable, 'the Redis store is not started');
    try {
      const reply = await link.evalScript(scripts.status, this.#names.lockKeys(encodeKey(key)), ['', '', '0', '', this.#namespace]);
      return parseStatus(key, parseJson(reply), viewer);
    } catch (error) {
      throw new LockError(ErrorCode.StoreUnavailable, `${this.#live().reason}: ${String(error)}`);
    }
  }

  /**
   * `list` plus the version each listed key was read at (for a gap-free
   * watch). It does not move the key's order on: steps the read shows may
   * still be on their way over pub/sub, and live watches need their events.
   */
  async #snapshot(prefix: string, limit: number, viewer: SessionId | null): Promise<{ result: ListResult; versions: Map<string, number> }> {
    const link = this.#link;
    if (!link) throw new LockError(ErrorCode.StoreUnavailable, 'the Redis store is not started');
    const found = new Set<string>();
    try {
      for (const shard of await link.shards()) {
        let cursor = '0';
        do {
          const reply = arr(await shard.command(['SCAN', cursor, 'MATCH', this.#names.holderPattern(prefix), 'COUNT', '1000']));
          cursor = String(reply[0] ?? '0');
          for (const name of arr(reply[1])) {
            const encoded = this.#names.encodedOfHolders(String(name));
            if (encoded !== null) found.add(decodeKey(encoded));
          }
        } while (cursor !== '0');
      }
    } catch (error) {
      throw new LockError(ErrorCode.StoreUnavailable, `${this.#live().reason}: ${String(error)}`);
    }
    const keys = [...found].sort();
    const read = await Promise.all(keys.slice(0, limit).map((key) => this.#readStatus(key, viewer)));
    const versions = new Map<string, number>();
    const locks: LockStatus[] = [];
    for (const { status, version } of read) {
      versions.set(status.key, version);
      if (status.locked) locks.push(status);
    }
    return { result: { locks, truncated: keys.length > limit }, versions };
  }

  // ---- timeouts ----

  #armTimeout(pending: LocalPending, ms: number): void {
    pending.timer = this.#clock.setTimeout(() => void this.#timeOut(pending), ms);
  }

  #timeOut(pending: LocalPending): Promise<boolean> {
    pending.timer = null;
    if (this.#tickets.get(pending.ticket) !== pending) return Promise.resolve(false);
    // Due before its script answered: time it out right after (a grant or `free` answer wins).
    if (pending.sending) return pending.sent.then(() => this.#timeOut(pending));
    const kind = pending.kind === 'acquire' ? 'a' : 'w';
    return this.#unqueue(pending, () => {
      const listener = this.#listener;
      if (pending.kind === 'acquire') listener?.acquireTimedOut(pending.session, pending.ticket);
      else listener?.waitDone(pending.session, pending.ticket, false);
    })
      .then(async (removed) => {
        if (removed || this.#tickets.get(pending.ticket) !== pending) return removed;
        // Gone from Redis, yet unsettled here: its grant (or the end of its wait) was never heard.
        this.#settleProbed(pending, await this.#probe(pending.key, pending.session, kind, String(pending.ticket)));
        return false;
      })
      .catch(() => {
        // Redis is unreachable: try again soon; a node that cannot vouch settles everything anyway.
        this.#retry(() => {
          if (this.#tickets.get(pending.ticket) === pending) void this.#timeOut(pending);
        });
        return false;
      });
  }

  /** Takes a pending request out of Redis if it is still there; `settled` runs before the step's batch. */
  #unqueue(pending: LocalPending, settled: () => void): Promise<boolean> {
    const kind = pending.kind === 'acquire' ? 'a' : 'w';
    return this.#step('unqueue', pending.key, [pending.session, String(pending.ticket), kind], (r) => {
      if (num(r, 'ok') !== 1 || this.#tickets.get(pending.ticket) !== pending) return false;
      this.#removePending(pending);
      settled();
      return true;
    });
  }

  #armHold(hold: LocalHold): void {
    this.#clearTimer(hold);
    if (hold.expiresAt === null) return;
    hold.timer = this.#clock.setTimeout(() => void this.#expire(hold), Math.max(0, hold.expiresAt - this.#clock.now()));
  }

  async #expire(hold: LocalHold): Promise<void> {
    hold.timer = null;
    if (this.#sessions.get(hold.session)?.holds.get(hold.key) !== hold) return;
    try {
      await this.#step('expire', hold.key, [hold.session, String(hold.token)], (r) => {
        const x = str(r, 'x');
        if (x !== '' && this.#sessions.get(hold.session)?.holds.get(hold.key) === hold) {
          hold.expiresAt = expiresAtOf(x);
          this.#armHold(hold);
        }
      });
    } catch {
      this.#retry(() => {
        if (this.#sessions.get(hold.session)?.holds.get(hold.key) === hold && hold.timer === null) void this.#expire(hold);
      });
    }
  }

  #retry(fn: () => void): void {
    if (this.#closing) return;
    const timer = setTimeout(fn, 100);
    timer.unref?.();
  }

  // ---- notes and events ----

  #onMessage(message: string): void {
    if (message === HEARTBEAT) {
      this.#heartbeat.heard = true;
      return;
    }
    if (message.startsWith(BARRIER)) {
      this.#passBarriers(Number(message.slice(BARRIER.length)));
      return;
    }
    let batch: Batch;
    try {
      batch = parseBatch(parseJson(message));
    } catch (error) {
      this.#logger.error({ err: String(error) }, 'unreadable message from Redis');
      return;
    }
    this.#sequencer?.accept(batch);
  }

  /**
   * A step's events, sent to every node. Only the head is read unless this
   * node has a watcher: the batch then just moves the key's version on. The
   * broadcast of this node's own step is dropped unread once its reply came.
   */
  #onBroadcast(message: string): void {
    const sequencer = this.#sequencer;
    const head = readBroadcastHead(message);
    if (!sequencer || !head) {
      this.#logger.error({}, 'unreadable broadcast from Redis');
      return;
    }
    try {
      if (head.origin === this.#liveness?.id) {
        sequencer.acceptOwn(head.call, () => parseBroadcast(message, head, true));
      } else {
        sequencer.accept(parseBroadcast(message, head, this.#hub.active));
      }
    } catch (error) {
      this.#logger.error({ err: String(error) }, 'unreadable broadcast from Redis');
    }
  }

  #deliver(batch: Batch, withEvents: boolean): void {
    for (const item of batch.items) {
      if (item.y === 'ev') {
        if (withEvents) this.#hub.dispatch(item.event, batch.v);
      } else {
        this.#applyNote(batch.key, item, batch.v);
      }
    }
  }

  /**
   * A note from a step with event version `version`. A note about a request
   * whose answer has not reached the caller yet waits for it, and so does a
   * `lost` while the session's acquire of that key is unanswered: that acquire
   * may have granted or confirmed the very hold the `lost` ends.
   */
  #applyNote(key: string, note: Note, version: number): void {
    const answering = this.#answeringFor(key, note);
    if (answering) answering.early.push({ note, version });
    else this.#settleNote(key, note);
  }

  #answeringFor(key: string, note: Note): LocalPending | undefined {
    const local = this.#sessions.get(note.session);
    if (!local || local.answering.size === 0) return undefined;
    for (const pending of local.answering) {
      if (note.y === 'lost' ? pending.kind === 'acquire' && pending.key === key : pending.ticket === note.ticket) return pending;
    }
    return undefined;
  }

  #settleNote(key: string, note: Note): void {
    const listener = this.#listener;
    if (note.y === 'lost') {
      const hold = this.#sessions.get(note.session)?.holds.get(key);
      if (hold && hold.token === note.token) {
        this.#dropHold(hold);
        listener?.lost(note.session, { key, token: note.token, reason: note.reason });
      } else {
        // Perhaps the hold of a grant not heard yet: a probe may still answer it.
        for (const pending of this.#sessions.get(note.session)?.pending.values() ?? []) {
          if (pending.kind === 'acquire' && pending.key === key) pending.unheld.set(note.token, note.reason);
        }
      }
      return;
    }
    const pending = this.#tickets.get(note.ticket);
    if (!pending || pending.session !== note.session || pending.key !== key) return;
    if (note.y === 'granted' && pending.kind === 'acquire') {
      this.#removePending(pending);
      const local = this.#sessions.get(note.session);
      const grant = { key, token: note.token, expiresAt: note.expiresAt };
      const ended = pending.unheld.get(grant.token);
      if (local && ended === undefined) this.#addHold(local, note.session, grant);
      listener?.granted(note.session, note.ticket, grant);
      // A grant note overtaken by its hold's `lost` (a missed message given up on, then late): report it now.
      if (ended !== undefined) listener?.lost(note.session, { key, token: grant.token, reason: ended });
    } else if (note.y === 'waitDone' && pending.kind === 'wait') {
      this.#removePending(pending);
      listener?.waitDone(note.session, note.ticket, true);
    }
  }

  /** Settles, before the request's answer, the waiting notes of steps Redis ran up to version `at`. */
  #settleEarly(pending: LocalPending, at: number): void {
    if (pending.early.length === 0) return;
    const before = pending.early.filter((e) => e.version <= at);
    if (before.length === 0) return;
    pending.early.splice(0, pending.early.length, ...pending.early.filter((e) => e.version > at));
    for (const { note } of before) this.#settleNote(pending.key, note);
  }

  /**
   * The request's script answered. Its waiting notes go out after the answer
   * reached the caller: the caller continues in microtasks, which all run
   * before `setImmediate`.
   */
  #sent(pending: LocalPending): void {
    pending.sending = false;
    pending.markSent();
    const local = this.#sessions.get(pending.session);
    setImmediate(() => {
      local?.answering.delete(pending);
      for (const { note, version } of pending.early.splice(0)) this.#applyNote(pending.key, note, version);
    });
  }

  // ---- local state ----

  #session(session: SessionId): LocalSession {
    let local = this.#sessions.get(session);
    if (!local) {
      local = createLocalSession();
      this.#sessions.set(session, local);
    }
    return local;
  }

  #addPending(local: LocalSession, pending: LocalPending): void {
    local.pending.set(pending.ticket, pending);
    local.answering.add(pending);
    this.#tickets.set(pending.ticket, pending);
    if (pending.kind === 'acquire') local.acquiring++;
  }

  #removePending(pending: LocalPending): void {
    this.#clearTimer(pending);
    if (this.#tickets.get(pending.ticket) === pending) this.#tickets.delete(pending.ticket);
    const local = this.#sessions.get(pending.session);
    if (local?.pending.get(pending.ticket) === pending) {
      local.pending.delete(pending.ticket);
      if (pending.kind === 'acquire') local.acquiring--;
    }
  }

  #addHold(local: LocalSession, session: SessionId, grant: { key: string; token: number; expiresAt: number | null }): void {
    const hold: LocalHold = { key: grant.key, session, token: grant.token, expiresAt: grant.expiresAt, timer: null };
    local.holds.set(grant.key, hold);
    this.#armHold(hold);
  }

  #dropHold(hold: LocalHold | undefined): void {
    if (!hold) return;
    this.#clearTimer(hold);
    const local = this.#sessions.get(hold.session);
    if (local?.holds.get(hold.key) === hold) local.holds.delete(hold.key);
  }

  #clearTimer(owner: { timer: unknown }): void {
    if (owner.timer !== null) this.#clock.clearTimeout(owner.timer);
    owner.timer = null;
  }

  // ---- node lifecycle (called by NodeLiveness) ----

  async #onRegistered(id: string, previous: string | null): Promise<void> {
    const link = this.#link;
    if (!link) return;
    this.#registered.clear();
    if (previous !== null) await link.unsubscribe(this.#names.nodeChannel(previous)).catch(() => {});
    await link.subscribe(this.#names.nodeChannel(id), (message) => this.#onMessage(message));
  }

  /**
   * This node can no longer vouch for its sessions' locks: tell every holder,
   * and answer every pending request `store_unavailable` (through the
   * listener's `failed`; without it `acquired: false` / `free: false`).
   */
  #abandon(cause: AbandonCause): void {
    const listener = this.#listener;
    const why =
      cause === 'state_lost'
        ? 'the lock store (Redis) lost its state; the request was dropped, retry shortly'
        : 'lost contact with the lock store (Redis); the request was dropped';
    this.#orphans.clear();
    for (const [session, local] of this.#sessions) {
      for (const pending of [...local.pending.values()]) {
        this.#removePending(pending);
        if (listener?.failed) listener.failed(session, pending.ticket, new LockError(ErrorCode.StoreUnavailable, why));
        else if (pending.kind === 'acquire') listener?.acquireTimedOut(session, pending.ticket);
        else listener?.waitDone(session, pending.ticket, false);
      }
      for (const hold of [...local.holds.values()]) {
        this.#dropHold(hold);
        listener?.lost(session, { key: hold.key, token: hold.token, reason: 'revoked' });
      }
      local.dirty.clear();
    }
    this.#logger.warn({ cause }, 'abandoned every lock and request of this node');
  }

  /** Reconciles once more after the run in progress, or now. */
  #reconcileSoon(): void {
    if (this.#reconciling) {
      this.#reconcileAgain = true;
      return;
    }
    this.#reconciling = this.#reconcile().finally(() => {
      this.#reconciling = null;
      if (this.#reconcileAgain) {
        this.#reconcileAgain = false;
        this.#reconcileSoon();
      }
    });
  }

  /** Where a request (`a`/`w` by ticket) or hold (`h` by token) of a session stands in Redis. */
  async #probe(key: string, session: SessionId, kind: 'a' | 'w' | 'h', id: string): Promise<Json> {
    const link = this.#link;
    const liveness = this.#live();
    if (!link) throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
    const reply = await link.evalScript(scripts.probe, this.#names.lockKeys(encodeKey(key)), [
      liveness.id,
      '',
      '0',
      '',
      this.#namespace,
      session,
      kind,
      id,
    ]);
    return parseJson(reply);
  }

  /**
   * True while this node serves: a request or hold gone from Redis then ended
   * in the table. Otherwise Redis may have lost its state unnoticed so far,
   * and the node's abandon settles everything instead.
   */
  #vouching(): boolean {
    return this.#liveness?.serving ?? false;
  }

  /** Settles a pending request from a probe's answer, unless it still waits in Redis. */
  #settleProbed(pending: LocalPending, r: Json): void {
    const st = str(r, 'st');
    if (this.#tickets.get(pending.ticket) !== pending || st === 'queued' || st === 'pending') return;
    this.#removePending(pending);
    const { session, ticket } = pending;
    const listener = this.#listener;
    if (pending.kind === 'wait') listener?.waitDone(session, ticket, true);
    else if (st === 'granted') {
      const grant = { key: pending.key, token: Number(str(r, 't')), expiresAt: expiresAtOf(str(r, 'x')) };
      const local = this.#sessions.get(session);
      const ended = pending.unheld.get(grant.token);
      if (local && ended === undefined) this.#addHold(local, session, grant);
      listener?.granted(session, ticket, grant);
      // Its `lost` came over pub/sub before this reply and found no hold: report it now.
      if (ended !== undefined) listener?.lost(session, { key: grant.key, token: grant.token, reason: ended });
    } else listener?.acquireTimedOut(session, ticket);
  }

  /** After missed messages: asks Redis where every pending request and hold stands. */
  async #reconcile(): Promise<void> {
    if (!this.#link || !this.#liveness) return;
    const listener = this.#listener;
    const work: Promise<void>[] = [];
    let again = false;
    for (const [session, local] of this.#sessions) {
      for (const pending of local.pending.values()) {
        if (pending.sending) continue;
        const kind = pending.kind === 'acquire' ? 'a' : 'w';
        work.push(
          this.#probe(pending.key, session, kind, String(pending.ticket)).then((r) => {
            const st = str(r, 'st');
            if (st === 'queued' || st === 'pending') return;
            if (this.#steps.has(pending.key) || !this.#vouching()) again = true;
            else this.#settleProbed(pending, r);
          }),
        );
      }
      for (const hold of local.holds.values()) {
        work.push(
          this.#probe(hold.key, session, 'h', String(hold.token)).then((r) => {
            if (str(r, 'st') !== 'gone' || local.holds.get(hold.key) !== hold) return;
            // A step of this node on the key (a release, a cancel) may have ended it: look again once applied.
            if (this.#steps.has(hold.key) || !this.#vouching()) {
              again = true;
              return;
            }
            this.#dropHold(hold);
            listener?.lost(session, { key: hold.key, token: hold.token, reason: 'revoked' });
          }),
        );
      }
    }
    const results = await Promise.allSettled(work);
    if (again || results.some((r) => r.status === 'rejected')) this.#retry(() => this.#reconcileSoon());
  }

  /**
   * Each renew period: checks the pub/sub path with a heartbeat, retries
   * closing sessions that failed to close, and trims the node's key set.
   */
  async #housekeeping(): Promise<void> {
    await this.#beat();
    for (const [session, keys] of [...this.#orphans]) {
      this.#orphans.delete(session);
      await this.#dropSession(session, keys, keys);
    }
    const link = this.#link;
    const liveness = this.#liveness;
    if (!link || !liveness) return;
    const inUse = new Set<string>();
    for (const local of this.#sessions.values()) for (const key of keysOf(local)) inUse.add(encodeKey(key));
    for (const keys of this.#orphans.values()) for (const key of keys) inUse.add(encodeKey(key));
    const unused = [...this.#registered.keys()].filter((encoded) => !inUse.has(encoded));
    if (unused.length === 0) return;
    for (const encoded of unused) this.#registered.delete(encoded);
    const set = this.#names.nodeKeys(liveness.id);
    await link.command(set, ['SREM', set, ...unused]);
  }

  /**
   * Publishes a heartbeat to this node's own channel. When the previous one
   * has not come back, notes or grants may be lost on a silent pub/sub path:
   * the node reconciles (and on a single server the silent connection is
   * reconnected once idle for the node TTL).
   */
  async #beat(): Promise<void> {
    const link = this.#link;
    const liveness = this.#liveness;
    if (!link || !liveness) return;
    if (this.#heartbeat.sent && !this.#heartbeat.heard) {
      this.#logger.warn({}, 'a pub/sub heartbeat did not come back; reconciling');
      this.#reconcileSoon();
    }
    this.#heartbeat = { sent: true, heard: false };
    const channel = this.#names.nodeChannel(liveness.id);
    await link.command(channel, ['PUBLISH', channel, HEARTBEAT]);
  }

  /** Runs the two drop phases for a session's keys; on failure keeps them to retry. */
  async #dropSession(session: SessionId, queued: Set<string>, held: Set<string>): Promise<void> {
    try {
      await Promise.all([...queued].map((key) => this.#step('drop', key, ['q', 's', session], () => {})));
      await Promise.all([...held].map((key) => this.#step('drop', key, ['h', 's', session], () => {})));
    } catch (error) {
      const keys = new Set([...queued, ...held]);
      this.#orphans.set(session, keys);
      throw error;
    }
  }

  async #cleanupDeadNode(id: string): Promise<void> {
    const link = this.#link;
    if (!link) return;
    const set = this.#names.nodeKeys(id);
    const keys = arr(await link.command(set, ['SMEMBERS', set])).map((e) => decodeKey(String(e)));
    await Promise.all(keys.map((key) => this.#step('drop', key, ['q', 'n', id], () => {})));
    await Promise.all(keys.map((key) => this.#step('drop', key, ['h', 'n', id], () => {})));
    await link.command(set, ['DEL', set]);
    await link.command(this.#names.nodes(), ['SREM', this.#names.nodes(), id]);
  }
}

function checkDuration(field: string, value: number | null): void {
  if (value === null) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_DURATION_MS) {
    throw badRequest(`${field}: must be null or a number of ms from 0 to ${MAX_DURATION_MS}`);
  }
}

function durationArg(value: number | null): string {
  return value === null ? '' : String(Math.ceil(value));
}

function acquireError(r: Json, key: string, limits: StoreLimits): LockError {
  const err = str(r, 'err');
  if (err === 'mode') {
    return badRequest(`mode: this session holds ${JSON.stringify(key)} as ${str(r, 'm')}; upgrades are not supported`);
  }
  if (err === 'queued') return badRequest(`key: this session already waits in the queue of ${JSON.stringify(key)}`);
  if (err === 'too_many_locks') {
    return new LockError(ErrorCode.TooManyLocks, `key: this session already holds or waits for ${limits.maxLocksPerSession} locks`);
  }
  if (err === 'too_many_waiters') {
    return new LockError(ErrorCode.TooManyWaiters, `key: ${limits.maxWaitersPerKey} requests already wait for ${JSON.stringify(key)}`);
  }
  return new LockError(ErrorCode.Internal, `unexpected reply from the acquire script: ${err}`);
}

/** The link with every script call reported to `observe` (the link itself without one). */
function timeScripts(link: RedisLink, observe: RedisStoreOptions['observeScript']): RedisLink {
  if (!observe) return link;
  return {
    ...link,
    async evalScript(script, keys, args) {
      const started = performance.now();
      let ok = false;
      try {
        const reply = await link.evalScript(script, keys, args);
        ok = true;
        return reply;
      } finally {
        observe(script.name, (performance.now() - started) / 1000, ok);
      }
    },
  };
}
