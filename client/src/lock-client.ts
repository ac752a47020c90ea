import { ErrorCode, type Limits, type ListResult, type LockStatus } from '@lockwire/protocol';
import { AcquireCalls, abortable, checkDuration } from './acquire-call.js';
import { Connection } from './connection.js';
import { ConnectionKeeper, type ClientInit } from './connection-keeper.js';
import { Emitter } from './emitter.js';
import { ClientErrorCode, isConnectionError, LockError, type CloseInfo } from './errors.js';
import { HoldReleases } from './hold-release.js';
import { keepalivePolicy } from './keepalive.js';
import type { Lease, LeaseOwner } from './lease.js';
import { LeaseBook, type Grant } from './lease-book.js';
import type { AcquireOptions, ClientEvents, ClientState, ConnectOptions, WatchOptions } from './options.js';
import { PrefectFace, type WaitForLockOptions } from './prefect.js';
import { reconnectPolicy } from './reconnect.js';
import { webSocketTransport, type TransportFactory } from './transport.js';
import { WatchRegistry, type LockEvent, type Watch } from './watch.js';
import { WatchCalls } from './watch-call.js';
import { LockManager } from './web-locks.js';

/**
 * A lockwire client: one WebSocket connection, which is the lock holder.
 *
 * Three faces over one core: leases (`acquire`, `withLock`), Prefect's lock
 * manager (`acquireLock`, `releaseLock`, `waitForLock`, `isLocked`,
 * `isLockHolder`), and observing (`status`, `list`, `watch`). Expected
 * outcomes are values (a timed-out acquire is `null`); failures are
 * `LockError`s whose `code` is the wire error code or a {@link ClientErrorCode}.
 */
export class LockClient extends PrefectFace {
  /** What leases call back into; kept off the public API. */
  readonly #leaseOwner: LeaseOwner = {
    releaseLease: (lease) => this.#releaseLease(lease),
    extendLease: (lease, holdTimeout) => this.#extendLease(lease, holdTimeout),
  };
  readonly #leases = new LeaseBook(this.#leaseOwner);
  readonly #watches = new WatchRegistry();
  /**
   * Holds this client lets go of in the background, by key: released by
   * `withLock`, a Web Lock whose callbacks are done or `useLock`
   * (`releaseUntilGone`), until the release is accepted (also after
   * refusals) or the lease lost; and acquires given up (aborted while
   * queued) before the server answered them, until it did and the hold of
   * a grant that came anyway is gone. A new acquire of the
   * key waits for them (see `AcquireCalls.send`).
   */
  readonly #releases = new HoldReleases(() => this.limits);
  readonly #events = new Emitter<ClientEvents>();
  /** The connection, its reconnects and the client's state. */
  readonly #keeper: ConnectionKeeper;
  /** Sends acquires once the holds of their key let go of in the background are gone. */
  readonly #acquires: AcquireCalls;
  /** Sends watches, and unwatches (again while refused) of prefixes no watch uses any more. */
  readonly #watchCalls: WatchCalls;
  /**
   * The Web Locks face: `navigator.locks` across tabs, devices and users
   * (`request(name, [options], callback)`, `query()`).
   */
  readonly locks: LockManager = new LockManager(this, this.#releases);
  /** Use `LockClient.connect()`. */
  protected constructor(init: ClientInit) {
    super();
    this.#keeper = new ConnectionKeeper(init, { leases: this.#leases, watches: this.#watches, events: this.#events });
    const limits = () => this.limits;
    this.#acquires = new AcquireCalls({ keeper: this.#keeper, leases: this.#leases, releases: this.#releases, limits });
    this.#watchCalls = new WatchCalls({ keeper: this.#keeper, watches: this.#watches, limits });
  }

  /**
   * Connects to a lockwire server (`ws://host:port/v1`) and resolves once the
   * server's welcome arrived. The client then reconnects by itself when the
   * connection drops, unless `reconnect: false` (see {@link ConnectOptions}).
   *
   * @throws LockError `connection_closed` if the first socket fails or closes
   * before the welcome (the transport's error as `cause`), or sends no
   * welcome within the keepalive's `interval + timeout`; `signal.reason` if
   * aborted; `RangeError` for invalid `reconnect` or `keepalive` options.
   */
  static async connect(url: string, options: ConnectOptions = {}): Promise<LockClient> {
    const transport = options.transport ?? webSocketTransport;
    const policy = reconnectPolicy(options.reconnect);
    const keepalive = keepalivePolicy(options.keepalive);
    const route: { client?: LockClient; closed?: [CloseInfo, LockError] } = {};
    const { connection, welcome } = await Connection.open(
      url,
      transport,
      {
        lost: (message) => {
          if (route.client) route.client.#keeper.onLost(message);
        },
        event: (message) => {
          if (route.client) route.client.#keeper.onEvent(message);
        },
        closed: (close, error) => {
          if (route.client) route.client.#keeper.onClosed(close, error);
          else route.closed = [close, error];
        },
      },
      { signal: options.signal, keepalive },
    );
    const client = new this({ url, transport, policy, keepalive, connection, welcome });
    route.client = client;
    // The socket may have closed between the welcome and the constructor.
    if (route.closed) client.#keeper.onClosed(...route.closed);
    return client;
  }

  /** The server's id of this session (the lock holder). */
  get session(): string {
    return this.#keeper.welcome.session;
  }

  /** The limits the server announced. */
  get limits(): Limits {
    return this.#keeper.welcome.limits;
  }

  /** The server's name and version, e.g. `lockwire/0.1.0`. */
  get server(): string {
    return this.#keeper.welcome.server;
  }

  /** `open`, `reconnecting`/`connecting` while the connection is down, `closed` for good. */
  get state(): ClientState {
    return this.#keeper.state;
  }

  /** Leases this client holds, by key. */
  get leases(): ReadonlyMap<string, Lease> {
    return this.#leases.snapshot();
  }

  /** The transport this client opens connections with. */
  protected get transport(): TransportFactory {
    return this.#keeper.transport;
  }

  /**
   * Listens to `lost`, `state`, `disconnect`, `reconnect` or `close` (see
   * {@link ClientEvents}); returns a function that stops listening.
   */
  on<K extends keyof ClientEvents>(type: K, listener: (payload: ClientEvents[K]) => void): () => void {
    return this.#events.on(type, listener);
  }

  /**
   * Acquires `key`. Resolves with a {@link Lease}, or `null` when not granted
   * within `acquireTimeout`. Acquiring a key this client already holds in
   * the same mode resolves with the lease it already has (same token,
   * nothing changed). An acquire of a key this client is already acquiring
   * (its request in flight or queued) waits for that one, counting against
   * its `acquireTimeout`, and then goes on the same way: with the lease that
   * one got, or sent itself when it got none. A try-once acquire waits only
   * for that one's first answer (`null` when it was queued); a steal is
   * sent at once (refused `bad_request` while that one waits in the server
   * queue; an acquire made meanwhile still waits for that one).
   *
   * While this client lets go of a hold of the key in the background (a
   * release of `withLock`, of a Web Lock or of `useLock` that the server
   * refused and the client asks again, or the late grant of an aborted
   * acquire, see `signal`), the acquire is sent only once that hold is
   * gone: its release accepted or the lock lost. Sent before, the server
   * would answer it with that very hold, which the release asked again
   * then drops. The wait counts against `acquireTimeout`: with `0` (try
   * once) the acquire resolves `null` at once, sending nothing (the
   * session holds the key meanwhile); with a finite one it resolves `null`
   * when that time runs out first, and is otherwise sent with the time
   * left. A drop or close of the connection meanwhile rejects it as a
   * pending acquire (`connection_lost`, `connection_closed`); `signal`
   * aborts the wait.
   *
   * `signal`: already aborted - rejects with its reason, sending nothing;
   * aborted while waiting - sends `cancel` and rejects with its reason at
   * once, also when the server does not answer; a grant that raced the
   * cancel is released by the client when it arrives (again while refused,
   * see `withLock`), and a new acquire of the key is sent only once the
   * server answered the aborted one and that grant's hold is gone; aborted
   * after the grant - ignored.
   *
   * @throws LockError `bad_request` for a duration the protocol does not
   * take (`NaN`, `Infinity`, negative, above 2147483647), sending nothing;
   * the server's code (`bad_request`, `too_many_locks`, ...),
   * `connection_lost` or `connection_closed`.
   */
  override async acquire(key: string, options: AcquireOptions = {}): Promise<Lease | null> {
    return (await this.#acquires.send(key, options))?.lease ?? null;
  }

  /**
   * Runs `fn` while holding `key` and releases the lock when `fn` settles.
   * Resolves with `fn`'s result once the server answered the release. A
   * release the server refuses (`rate_limited`, `store_unavailable`, ...) is
   * sent again in the background, with backoff, until it is accepted or the
   * lock is lost, so the lock never outlives `fn` for the session's life;
   * meanwhile a new acquire of the key (`acquire`, `withLock`,
   * `acquireLock`) waits for that (see `acquire()`), so it gets a hold of
   * its own rather than the one being released.
   *
   * On a key this client already holds in the same mode, `fn` runs within
   * that hold (it gets the existing lease, as `acquire()` does) and the hold
   * is left as it was: only a lease this call acquired is released.
   *
   * A grant that arrives after its hold was gone (see `acquire()`: lost,
   * or released) holds nothing: `fn` is not called and nothing is released.
   *
   * @throws LockError `not_acquired` when the lock was not granted within
   * `acquireTimeout`; the loss's reason (`stolen`, `revoked`, `expired`,
   * `connection_lost`, the `signal.reason` of the lease) when the grant
   * arrived already lost; `not_holder` when it arrived already released
   * (this client's release of that hold answered first, or a newer lease
   * of the key held); whatever `fn` throws; the errors of `acquire()`.
   */
  async withLock<T>(key: string, fn: (lease: Lease) => Promise<T> | T, options: AcquireOptions = {}): Promise<T> {
    const grant = await this.#acquires.send(key, options);
    if (!grant) {
      throw new LockError(ClientErrorCode.NotAcquired, `lock ${JSON.stringify(key)} not acquired in time`);
    }
    // A grant whose hold ended before its reply came holds nothing (nor is there anything to release):
    // `fn` would run without the exclusion it asked for.
    if (!grant.lease.held) throw endedAtGrantError(grant.lease);
    try {
      return await fn(grant.lease);
    } finally {
      // A lease this call did not make is the outer holder's: releasing it would end their exclusion.
      if (grant.fresh) await this.#releases.release(grant.lease);
    }
  }

  /**
   * Waits until every hold on `key` that exists now has ended; `false` on timeout. Never acquires.
   *
   * @throws LockError `bad_request` for a `timeout` the protocol does not take (`NaN`, `Infinity`, negative,
   * above 2147483647), sending nothing.
   */
  override async wait(key: string, options: WaitForLockOptions = {}): Promise<boolean> {
    checkDuration('timeout', options.timeout);
    options.signal?.throwIfAborted();
    const connection = this.#keeper.live();
    const call = connection.request('wait', { key, timeout: options.timeout }, { onResult: (r) => r.free });
    return abortable(connection, call, options.signal);
  }

  /** The state of `key`: holders, queue in grant order, and `heldByYou`. */
  override async status(key: string): Promise<LockStatus> {
    return this.#keeper.live().request('status', { key }, { onResult: (r) => r }).result;
  }

  /** Status of the locked keys starting with `prefix` (default all), in key order, at most `limit` (default 1000). */
  async list(options: { prefix?: string; limit?: number } = {}): Promise<ListResult> {
    return this.#keeper
      .live()
      .request('list', { prefix: options.prefix, limit: options.limit }, { onResult: (r) => r }).result;
  }

  /**
   * Watches keys starting with `prefix`: resolves with a {@link Watch} whose
   * `snapshot` holds the locked keys at the start, then calls `onEvent` for
   * every change after it. Overlapping watches each get the events of their
   * prefix. After a reconnect the watch is re-established and `onResync`
   * gets the fresh snapshot (events while offline are not replayed).
   */
  watch(prefix: string, onEvent: (event: LockEvent) => void, options: WatchOptions = {}): Promise<Watch> {
    return this.#watchCalls.watch(prefix, onEvent, options);
  }

  /** Force-releases every hold on `key` (each holder loses it as `revoked`); resolves with how many. */
  async revoke(key: string): Promise<number> {
    return this.#keeper.live().request('revoke', { key }, { onResult: (r) => r.revoked }).result;
  }

  /** Round trip to the server; resolves with the server's clock (epoch ms). */
  async ping(): Promise<number> {
    return this.#keeper.live().request('ping', {}, { onResult: (r) => r.at }).result;
  }

  /**
   * Closes the client for good (also stops reconnecting). Pending calls
   * reject with `connection_closed`, every lease's signal aborts with
   * `connection_lost` (the server releases the locks), watches end: no
   * watch gets an event from the call on (also the rest of one being
   * handed out), and their signals abort once the socket closed.
   * Idempotent; resolves when the socket closed.
   *
   * Called while disconnected from a server with session grace, where the
   * server still keeps the session's locks, it makes one attempt to resume
   * the session and close it normally, so the server releases them at once;
   * it then resolves once that attempt is done or gave up (after 2 s at most,
   * or the rest of the grace if shorter). Failing that, the server releases
   * them when the grace runs out.
   */
  close(): Promise<void> {
    // At once, not when the socket has closed: an event being handed out reaches no further watch.
    this.#watches.silenceAll();
    return this.#keeper.close();
  }

  /** Closes the client (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * @internal Used by the React hooks (`useLock`), which release only a
   * hold they made. `acquire()`, telling a new lease (`fresh`) from the one
   * this client already had (a re-acquire answered with the hold of an
   * `acquire()`, `withLock` or `acquireLock`), which stays its holder's to
   * release, as in `withLock`.
   */
  acquireGrant(key: string, options: AcquireOptions = {}): Promise<Grant | null> {
    return this.#acquires.send(key, options);
  }

  /**
   * @internal Used by the React hooks (`useLock`), which let go of a lease
   * that nobody waits on any more. Releases `lease` (one this client
   * granted) as `withLock` does: a release the server refuses
   * (`rate_limited`, `store_unavailable`, ...) is sent again with backoff
   * until it is accepted or the lock is lost, and until then a new acquire
   * of the key on this client (`acquire`, `withLock`, `acquireLock`, a Web
   * Lock request) waits for it, so it gets a hold of its own rather than
   * the one being released. The key is recorded before this returns.
   * Resolves once the hold is gone: the release accepted (also after
   * refusals), or the lease lost (its connection gone included); at once
   * for a lease no longer held. Never rejects.
   */
  releaseUntilGone(lease: Lease): Promise<void> {
    return new Promise<void>((gone) => void this.#releases.release(lease, gone));
  }

  /**
   * @internal Used by the React hooks: resolves once the holds of `key` this
   * client lets go of in the background are gone (an acquire given up before
   * the server answered it, and the grant that came anyway, handed back;
   * a release asked again after a refusal), at once when there are none.
   * Never rejects.
   */
  lettingGo(key: string): Promise<void> {
    return this.#releases.pending(key) ?? Promise.resolve();
  }

  // ---- leases ----

  /**
   * Sends the release of a lease; see `Lease.release()`. The lease leaves the
   * book only once the hold is gone: a refused release leaves it held here,
   * as it still is on the server.
   */
  async #releaseLease(lease: Lease): Promise<void> {
    // A release names only the key. An acquire of it sent before and not
    // answered yet may be answered with a new hold, this lease's hold having
    // ended meanwhile (its `lost` still on the way): sent now, the release
    // would end that new hold. So it waits for that answer, after which this
    // lease either is the hold the acquire got (the server answers a
    // re-acquire with the hold the session has), and is released, or is
    // gone, as on `not_holder`.
    const answered = this.#acquires.firstAnswer(lease.key);
    if (answered) {
      await answered;
      if (!lease.held || !this.#leases.stands(lease)) {
        this.#leases.forget(lease);
        return;
      }
    }
    const connection = this.#keeper.connection;
    // A closed connection already released every lock of the session (with session grace, the resume does).
    if (!connection?.isOpen) {
      this.#leases.forget(lease);
      return;
    }
    try {
      await connection.request('release', { key: lease.key }, { onResult: () => this.#leases.forget(lease) }).result;
    } catch (error) {
      // A lost connection released the lock, or (with session grace) the resume hands it back.
      const settled = isConnectionError(error) || (error instanceof LockError && error.code === 'not_holder');
      if (!settled) throw error;
      this.#leases.forget(lease);
    }
  }

  /** Sends the extend of a lease; see `Lease.extend()`. */
  async #extendLease(lease: Lease, holdTimeout: number | null): Promise<number | null> {
    checkDuration('holdTimeout', holdTimeout);
    if (!lease.held) {
      throw new LockError('not_holder', `lock ${JSON.stringify(lease.key)} is no longer held (${lease.state})`);
    }
    return this.#keeper.live().request('extend', { key: lease.key, holdTimeout }, {
      onResult: (result) => {
        this.#leases.extended(lease, result.expiresAt);
        return result.expiresAt;
      },
    }).result;
  }

  /**
   * Releases `key` (the Prefect face's `release_lock`).
   *
   * @throws LockError `not_holder` when this connection does not hold it;
   * nothing changes then. The server's refusal (`rate_limited`,
   * `store_unavailable`, ...): the server still holds the lock, and the
   * client does not ask again (the caller may), so an acquire of the key
   * meanwhile is answered with that hold, as any re-acquire is.
   */
  override async releaseLock(key: string): Promise<void> {
    // Sent beside an acquire of the key not answered yet, the release could
    // be read first and that acquire's hold survive it, or be answered first
    // and the grant that follows look like a hold it left: it goes once that
    // acquire has its answer (see `#releaseLease`).
    await this.#acquires.firstAnswer(key);
    await this.#keeper.live().request('release', { key }, {
      onResult: () => this.#leases.released(key),
    }).result;
  }
}

/**
 * Why `withLock` does not run its callback with a grant whose hold was gone
 * when it arrived: the loss's own error, as a holder that lost the lock
 * gets it, or `not_holder` for a hold that was released.
 */
function endedAtGrantError(lease: Lease): unknown {
  if (lease.signal.aborted) {
    const reason: unknown = lease.signal.reason;
    return reason;
  }
  return new LockError(
    ErrorCode.NotHolder,
    `lock ${JSON.stringify(lease.key)} was released before its grant arrived`,
  );
}
