import { performance } from 'node:perf_hooks';
import { ErrorCode, type LostReason } from '@lockwire/protocol';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * How an `acquire` ended, the `outcome` label of `lockwire_acquires_total`.
 * Every acquire counts exactly one final outcome; `queued` is counted in
 * addition, when a request joins a queue (it then ends `granted_after_wait`,
 * `timed_out`, `cancelled` or `error`).
 */
export const AcquireOutcome = {
  GrantedImmediately: 'granted_immediately',
  Queued: 'queued',
  GrantedAfterWait: 'granted_after_wait',
  NotGranted: 'not_granted',
  TimedOut: 'timed_out',
  /** Cancelled by a `cancel`, or abandoned because its connection closed. */
  Cancelled: 'cancelled',
  /** Answered with an error, `shutting_down` included. */
  Error: 'error',
} as const;
export type AcquireOutcome = (typeof AcquireOutcome)[keyof typeof AcquireOutcome];

/** What the gauges read from the server at each scrape. */
export interface MetricsSource {
  /** `kind` of the server's store: the `store` label of the gauges. */
  readonly store: string;
  /** Open WebSocket connections. */
  connections(): number;
  /** Sessions the server knows. */
  sessions(): number;
  /** Locks held by this server's sessions. */
  heldLocks(): number;
  /** Acquires of this server's sessions waiting in a queue. */
  waiters(): number;
}

export interface LockMetricsOptions {
  /** Also collect prom-client's process metrics (CPU, memory, event loop, GC). Default true. */
  processMetrics?: boolean;
}

/** The HTTP statuses an upgrade of the WebSocket endpoint is refused with, the `status` label of `lockwire_upgrades_refused_total`. */
export const UPGRADE_REFUSALS = [400, 401, 403, 404, 405, 503] as const;
export type UpgradeRefusal = (typeof UPGRADE_REFUSALS)[number];

const OUTCOMES = Object.values(AcquireOutcome);
const LOST_REASONS: readonly LostReason[] = ['expired', 'stolen', 'revoked'];
const HANDOFF_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800];
const SCRIPT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5];

function zeroed(counter: Counter.Internal): Counter.Internal {
  counter.inc(0);
  return counter;
}

/**
 * The Prometheus metrics of one lockwire server, on a registry of their own
 * (no module-level state: any number of servers can run in one process).
 * The hot path only increments counters and observes histograms; the gauges
 * are read from the `MetricsSource` when scraped.
 *
 * Create one per server: pass it to `createLockServer({ metrics })` and, for
 * a Redis store, give `observeScript` to the store's options.
 */
export class LockMetrics {
  /** The registry `/metrics` renders. Further metrics may be registered on it. */
  readonly registry = new Registry();
  #source: MetricsSource | null = null;
  /** Per key, when the last hold ended, until the grant it made room for (or the end of that step). */
  readonly #holdEnds = new Map<string, number>();

  readonly #acquires: Record<AcquireOutcome, Counter.Internal>;
  readonly #grants: Counter;
  /**
   * Acquire outcomes and grants counted since the last scrape, added to
   * their prom-client counters when those are collected. Every request
   * counts an outcome, and an `inc()` of prom-client rebuilds the label
   * set's hash string and re-validates its labels each time; a plain number
   * costs nothing, and a scrape (or `get()`) sees the same totals.
   */
  readonly #unflushed: Record<AcquireOutcome, number> = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<
    AcquireOutcome,
    number
  >;
  #unflushedGrants = 0;
  readonly #lost: Record<LostReason, Counter.Internal>;
  readonly #errors: Counter<'code'>;
  readonly #upgradesRefused: Record<UpgradeRefusal, Counter.Internal>;
  readonly #handoff: Histogram;
  readonly #wait: Histogram;
  readonly #scriptTime: Histogram<'script'>;
  readonly #scriptErrors: Counter<'script'>;

  constructor(options: LockMetricsOptions = {}) {
    const registers = [this.registry];
    const gauge = (name: string, help: string, read: (source: MetricsSource) => number) => {
      const metrics = this;
      return new Gauge({
        name,
        help,
        labelNames: ['store'],
        registers,
        collect() {
          this.reset();
          const source = metrics.#source;
          if (source) this.labels(source.store).set(read(source));
        },
      });
    };
    gauge('lockwire_connections', 'Open WebSocket connections.', (s) => s.connections());
    gauge('lockwire_sessions', 'Sessions known to this server.', (s) => s.sessions());
    gauge('lockwire_locks_held', "Locks held by this server's sessions.", (s) => s.heldLocks());
    gauge('lockwire_waiters', "Acquires of this server's sessions waiting in a queue.", (s) => s.waiters());

    const acquires = new Counter({
      name: 'lockwire_acquires_total',
      help: 'Acquire requests by outcome; queued ones also count their final outcome.',
      labelNames: ['outcome'],
      registers,
      collect: () => this.#flushAcquires(),
    });
    // Every label value is exported from the start, at 0, so rates work from the first scrape.
    this.#acquires = Object.fromEntries(OUTCOMES.map((o) => [o, zeroed(acquires.labels(o))])) as Record<
      AcquireOutcome,
      Counter.Internal
    >;
    this.#grants = new Counter({
      name: 'lockwire_grants_total',
      help: 'Locks granted.',
      registers,
      collect: () => this.#flushAcquires(),
    });
    const lost = new Counter({
      name: 'lockwire_locks_lost_total',
      help: 'Holds taken away from their session: expired (hold timeout), stolen, revoked.',
      labelNames: ['reason'],
      registers,
    });
    this.#lost = Object.fromEntries(LOST_REASONS.map((r) => [r, zeroed(lost.labels(r))])) as Record<
      LostReason,
      Counter.Internal
    >;
    this.#errors = new Counter({
      name: 'lockwire_errors_total',
      help: 'Error replies by error code.',
      labelNames: ['code'],
      registers,
    });
    for (const code of Object.values(ErrorCode)) zeroed(this.#errors.labels(code));
    const refused = new Counter({
      name: 'lockwire_upgrades_refused_total',
      help: 'WebSocket upgrades refused, by HTTP status: 400 (bad request target or handshake headers), 404, 405 (method not GET), 401/403 (credentials, Origin), 503 (maxConnections, shutting down).',
      labelNames: ['status'],
      registers,
    });
    this.#upgradesRefused = Object.fromEntries(
      UPGRADE_REFUSALS.map((status) => [status, zeroed(refused.labels(String(status)))]),
    ) as Record<UpgradeRefusal, Counter.Internal>;
    this.#handoff = new Histogram({
      name: 'lockwire_handoff_seconds',
      help: 'From the end of a hold (release, expiry, steal, revoke, disconnect) to the grant of the next waiter, measured in the server.',
      buckets: HANDOFF_BUCKETS,
      registers,
    });
    this.#wait = new Histogram({
      name: 'lockwire_acquire_wait_seconds',
      help: 'Time a queued acquire waited until it was granted.',
      buckets: WAIT_BUCKETS,
      registers,
    });
    this.#scriptTime = new Histogram({
      name: 'lockwire_redis_script_seconds',
      help: 'Redis store: duration of each Lua script call, failed ones included.',
      labelNames: ['script'],
      buckets: SCRIPT_BUCKETS,
      registers,
    });
    this.#scriptErrors = new Counter({
      name: 'lockwire_redis_script_errors_total',
      help: 'Redis store: Lua script calls that failed (connection, timeout, script error).',
      labelNames: ['script'],
      registers,
    });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Where the gauges read from; set by the server that uses these metrics. */
  track(source: MetricsSource): void {
    this.#source = source;
  }

  /** The `Content-Type` of `scrape()`'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the Prometheus text format. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /** Counts one acquire outcome; grants also count in `lockwire_grants_total`. */
  acquire(outcome: AcquireOutcome): void {
    this.#unflushed[outcome]++;
    if (outcome === AcquireOutcome.GrantedImmediately || outcome === AcquireOutcome.GrantedAfterWait) {
      this.#unflushedGrants++;
    }
  }

  /** Adds the counts kept since the last collection to the acquire and grant counters. */
  #flushAcquires(): void {
    for (const outcome of OUTCOMES) {
      const count = this.#unflushed[outcome];
      if (count === 0) continue;
      this.#unflushed[outcome] = 0;
      this.#acquires[outcome].inc(count);
    }
    if (this.#unflushedGrants > 0) this.#grants.inc(this.#unflushedGrants);
    this.#unflushedGrants = 0;
  }

  /** A queued acquire was granted after waiting `seconds`. */
  waited(seconds: number): void {
    this.#wait.observe(seconds);
  }

  /** A hold was taken away from its session. */
  lost(reason: LostReason): void {
    this.#lost[reason].inc();
  }

  /** An error reply went out. */
  error(code: string): void {
    this.#errors.labels(code).inc();
  }

  /** An upgrade of the WebSocket endpoint was refused with `status`. */
  upgradeRefused(status: UpgradeRefusal): void {
    this.#upgradesRefused[status].inc();
  }

  /**
   * Marks that a hold on `key` is ending now. A grant of that key reported
   * through `handedOff` before the returned function is called is observed
   * as a handoff; call it when the step that ended the hold is over.
   */
  holdEnding(key: string): () => void {
    const at = performance.now();
    this.#holdEnds.set(key, at);
    return () => {
      if (this.#holdEnds.get(key) === at) this.#holdEnds.delete(key);
    };
  }

  /** A queued acquire of `key` was granted: observes the handoff when a hold of it just ended. */
  handedOff(key: string): void {
    const at = this.#holdEnds.get(key);
    if (at !== undefined) this.#handoff.observe((performance.now() - at) / 1000);
  }

  /**
   * Records one Redis script call: pass as the Redis store's `observeScript`
   * option. Bound, so it can be passed as is.
   */
  readonly observeScript = (name: string, seconds: number, ok: boolean): void => {
    this.#scriptTime.labels(name).observe(seconds);
    if (!ok) this.#scriptErrors.labels(name).inc();
  };
}

/** Creates the metrics of one server (see `LockMetrics`). */
export function createLockMetrics(options: LockMetricsOptions = {}): LockMetrics {
  return new LockMetrics(options);
}
