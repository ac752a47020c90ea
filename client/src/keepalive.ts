import { MAX_DURATION_MS } from '@lockwire/protocol';

/**
 * How a client notices a network path that went silent (half-open: nothing
 * arrives, nothing closes). When nothing has arrived from the server for
 * `interval` ms, the client sends a protocol `ping`; when nothing at all
 * has arrived `timeout` ms after that, it takes the connection for dead and
 * handles it as a drop. Any frame counts as a sign of life, not only the
 * ping's answer, so a busy connection sends no pings.
 */
export interface KeepaliveOptions {
  /**
   * Silence (ms) after which the client pings. Default 10000, the server's
   * default heartbeat: an idle connection costs one ping per interval.
   */
  interval?: number;
  /**
   * How long (ms) the client waits for anything to arrive after its ping.
   * Default 5000. A silent path is so noticed `interval + timeout` after the
   * last frame (15 s by default). Also the longest a reconnect attempt
   * waits for the server's welcome, with `interval` added.
   */
  timeout?: number;
}

/** {@link KeepaliveOptions} with every default filled in. */
export type KeepalivePolicy = Required<KeepaliveOptions>;

/** The default `interval`, in ms: the server's default heartbeat. */
const DEFAULT_KEEPALIVE_INTERVAL = 10_000;
/** The default `timeout`, in ms. */
const DEFAULT_KEEPALIVE_TIMEOUT = 5_000;

/** Normalises the `keepalive` option: `false` turns it off; `undefined`/`true` takes the defaults. */
export function keepalivePolicy(option: KeepaliveOptions | boolean | undefined): KeepalivePolicy | null {
  if (option === false) return null;
  const given = option === true || option === undefined ? {} : option;
  const policy: KeepalivePolicy = {
    interval: given.interval ?? DEFAULT_KEEPALIVE_INTERVAL,
    timeout: given.timeout ?? DEFAULT_KEEPALIVE_TIMEOUT,
  };
  for (const [name, value] of Object.entries(policy)) {
    if (typeof value !== 'number' || !(value >= 1 && value <= MAX_DURATION_MS)) {
      const got = String(value);
      throw new RangeError(`keepalive.${name} must be a number of ms from 1 to ${MAX_DURATION_MS}, got ${got}`);
    }
  }
  return policy;
}

/** How long (ms) a connect waits for the server's welcome under `policy`: `interval + timeout`, as a timer takes it. */
export function welcomeDeadline(policy: KeepalivePolicy): number {
  return Math.min(MAX_DURATION_MS, policy.interval + policy.timeout);
}

/** What a {@link Keepalive} does to the connection it watches. */
export interface KeepaliveActions {
  /** Sends a `ping` that nothing waits for: its answer, like any frame, is reported through `heard()`. */
  ping(): void;
  /** Nothing arrived within `timeout` of a ping: the connection is dead. Called at most once. */
  dead(): void;
}

/**
 * The keepalive of one open connection: {@link Keepalive.heard} on every
 * frame, {@link Keepalive.stop} when the connection ends. A frame costs a
 * clock read, not a timer: the one timer checks the time of the last frame
 * when it fires.
 */
export class Keepalive {
  readonly #policy: KeepalivePolicy;
  readonly #actions: KeepaliveActions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** `performance.now()` of the last frame (or of the start). */
  #lastHeard = performance.now();
  /** Set by a frame; cleared as a ping goes out. */
  #heardSincePing = true;
  /**
   * While a ping waits for an answer: when its timer is due, whether it was given a second chance, and
   * whether its verdict waits one task for frames already received to be read.
   */
  #waiting: { due: number; extended: boolean; settling: boolean } | undefined;
  #stopped = false;

  constructor(policy: KeepalivePolicy, actions: KeepaliveActions) {
    this.#policy = policy;
    this.#actions = actions;
    this.#arm(policy.interval);
  }

  /** A frame arrived. */
  heard(): void {
    this.#lastHeard = performance.now();
    this.#heardSincePing = true;
  }

  /** Stops for good; idempotent. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.#fire(), Math.max(1, Math.ceil(ms)));
  }

  #fire(): void {
    if (this.#stopped) return;
    const now = performance.now();
    const waiting = this.#waiting;
    if (waiting === undefined) {
      const silent = now - this.#lastHeard;
      if (silent < this.#policy.interval) {
        this.#arm(this.#policy.interval - silent);
        return;
      }
      this.#heardSincePing = false;
      this.#waiting = { due: now + this.#policy.timeout, extended: false, settling: false };
      this.#arm(this.#policy.timeout);
      this.#actions.ping();
      return;
    }
    if (this.#heardSincePing) {
      this.#waiting = undefined;
      this.#arm(this.#policy.interval - (now - this.#lastHeard));
      return;
    }
    // A frame may be in the socket unread: a process that stalled runs a timer that came due before it
    // reads a socket that became readable meanwhile (Node does; a browser does not promise the opposite).
    // The verdict waits one task, so what already arrived is read and counted first.
    if (!waiting.settling) {
      waiting.settling = true;
      this.#timer = setTimeout(() => this.#fire(), 0);
      return;
    }
    // A verdict due well before now ran behind a stalled process (a long pause, a throttled background
    // tab): frames that arrived meanwhile may still be unread. The connection gets another `timeout` to be
    // heard from, once, so the client's own stall is not taken for the server's silence.
    if (!waiting.extended && now - waiting.due > this.#policy.timeout / 2) {
      this.#waiting = { due: now + this.#policy.timeout, extended: true, settling: false };
      this.#arm(this.#policy.timeout);
      return;
    }
    this.stop();
    this.#actions.dead();
  }
}
