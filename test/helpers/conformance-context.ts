import { afterEach, beforeEach, expect } from 'vitest';
import { createManualClock, systemClock, type Clock, type LockServerOptions, type ManualClock, type TimerHandle } from '@lockwire/server';
import { httpUrlOf, type ConformanceTarget, type TargetInstance, type TargetLimits } from './conformance-target.js';
import { RawClient, type Frame } from './raw-client.js';

/** The per-test view a conformance suite works with. */
export interface Conformance {
  readonly target: ConformanceTarget;
  readonly clock: Clock;
  /** True when `elapse` moves a manual clock; false on real time. */
  readonly manual: boolean;
  /**
   * The time unit of timeout tests in ms: timeouts are written as multiples
   * of it (1000 on a manual clock, 100 on real time so tests stay short).
   */
  readonly unit: number;
  readonly instance: TargetInstance;
  /**
   * Connects the next client, with `token` as its `access_token` when given;
   * clients go round-robin over the target's nodes.
   */
  connect(token?: string): Promise<RawClient>;
  /**
   * Lets `ms` pass: advances a manual clock (first running the timers an
   * `elapseLate` held back, then those that fall due), no-op on real time.
   */
  elapse(ms: number): void;
  /**
   * Lets `ms` pass on the manual clock while the timers that fall due are
   * held back, as in a loaded process whose timers run late: the server
   * sees the time has passed, but they run only at the next `elapse`.
   * Throws on real time.
   */
  elapseLate(ms: number): void;
  now(): number;
  /** GETs a path on node `node` (default 0) and returns the status and parsed JSON body. */
  http(path: string, node?: number): Promise<{ status: number; body: unknown }>;
  /** Starts a second deployment of the target on the same clock (closed after the test). */
  startAgain(): Promise<TargetInstance>;
  /** Asserts an epoch-ms field: exact on a manual clock, within a small tolerance on real time. */
  expectTime(actual: unknown, expected: number): void;
}

export interface ConformanceOptions {
  limits?: TargetLimits;
  /** Credentials the target's nodes require (`connect` is then given a token). */
  auth?: LockServerOptions['auth'];
}

/**
 * Registers `beforeEach`/`afterEach` hooks that start the target before each
 * test and stop it after, and returns an accessor for the current test's
 * context. After each test it asserts that every frame the server sent was a
 * valid protocol message and, on a manual clock, that no timer was left.
 */
export function useConformance(target: ConformanceTarget, options: ConformanceOptions = {}): () => Conformance {
  let current: Conformance | undefined;
  let clients: RawClient[] = [];
  let instances: TargetInstance[] = [];
  let manualClock: ManualClock | undefined;
  let lateTimers: LateTimers | undefined;

  beforeEach(async () => {
    manualClock = target.manualClock ? createManualClock() : undefined;
    lateTimers = manualClock ? new LateTimers(manualClock) : undefined;
    const clock: Clock = lateTimers?.clock ?? systemClock;
    const limits = options.limits ?? {};
    const starting = { clock, limits, ...(options.auth ? { auth: options.auth } : {}) };
    clients = [];
    instances = [];
    const instance = await target.start(starting);
    instances.push(instance);
    let connected = 0;
    const tolerance = 250;
    current = {
      target,
      clock,
      manual: manualClock !== undefined,
      unit: manualClock ? 1000 : 100,
      instance,
      async connect(token) {
        const url = instance.urls[connected++ % instance.urls.length];
        if (url === undefined) throw new Error(`target ${target.name} has no urls`);
        const client = await RawClient.connect(token === undefined ? url : `${url}?access_token=${encodeURIComponent(token)}`);
        clients.push(client);
        return client;
      },
      elapse(ms) {
        lateTimers?.runHeld();
        manualClock?.advance(ms);
      },
      elapseLate(ms) {
        if (!lateTimers) throw new Error(`target ${target.name} runs on real time: elapseLate needs a manual clock`);
        lateTimers.advanceHolding(ms);
      },
      now: () => clock.now(),
      async http(path, node = 0) {
        const url = instance.urls[node % instance.urls.length];
        if (url === undefined) throw new Error(`target ${target.name} has no urls`);
        const response = await fetch(httpUrlOf(url) + path);
        const text = await response.text();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // Not JSON: the test sees the text.
        }
        return { status: response.status, body };
      },
      async startAgain() {
        const again = await target.start(starting);
        instances.push(again);
        return again;
      },
      expectTime(actual, expected) {
        if (manualClock) {
          expect(actual).toBe(expected);
        } else {
          expect(typeof actual).toBe('number');
          expect(Math.abs(Number(actual) - expected)).toBeLessThanOrEqual(tolerance);
        }
      },
    };
  });

  afterEach(async () => {
    const malformed = clients.flatMap((c) => c.malformed.map((m) => `${c.session}: ${m}`));
    for (const client of clients) client.terminate();
    for (const instance of instances.reverse()) await instance.close();
    current = undefined;
    expect(malformed, 'frames that are not valid protocol messages').toEqual([]);
    if (manualClock) expect(manualClock.pending() + (lateTimers?.held ?? 0), 'timers left after the server closed').toBe(0);
  });

  return () => {
    if (!current) throw new Error('conformance context used outside a test');
    return current;
  };
}

/**
 * The manual clock as the target sees it, with timers that can be held back:
 * one that falls due while `advanceHolding` moves the clock waits until
 * `runHeld`, unless the server clears it first.
 */
export class LateTimers {
  readonly clock: Clock;
  readonly #manual: ManualClock;
  /** Timers that fell due while held back, in the order they fell due. */
  readonly #held = new Map<object, () => void>();
  #holding = false;

  constructor(manual: ManualClock) {
    this.#manual = manual;
    const held = this.#held;
    this.clock = {
      now: () => manual.now(),
      monotonic: () => manual.monotonic(),
      resolution: manual.resolution ?? 0,
      setTimeout: (fn, ms) => {
        const handle: { inner: TimerHandle } = { inner: undefined };
        handle.inner = manual.setTimeout(() => {
          if (this.#holding) held.set(handle, fn);
          else fn();
        }, ms);
        return handle;
      },
      clearTimeout: (handle) => {
        const h = handle as { inner: TimerHandle };
        held.delete(h);
        manual.clearTimeout(h.inner);
      },
    };
  }

  /** Number of timers held back and not run or cleared yet. */
  get held(): number {
    return this.#held.size;
  }

  advanceHolding(ms: number): void {
    this.#holding = true;
    try {
      this.#manual.advance(ms);
    } finally {
      this.#holding = false;
    }
  }

  runHeld(): void {
    for (const [handle, fn] of [...this.#held]) {
      if (!this.#held.delete(handle)) continue;
      fn();
    }
  }
}

/** A reply's field as a number, failing the test when it is not one. */
export function num(value: unknown): number {
  expect(typeof value).toBe('number');
  return Number(value);
}

/** The whole lock table as one viewer sees it (`list` of every key), to assert that nothing changed. */
export async function table(client: RawClient): Promise<unknown> {
  const reply = await client.request({ op: 'list', limit: 10_000 });
  expect(reply.ok).toBe(true);
  return reply.locks;
}

/** Sends `acquire` and returns its reply. */
export function acquire(client: RawClient, key: string, fields: Record<string, unknown> = {}): Promise<Frame> {
  return client.request({ op: 'acquire', key, ...fields });
}

/** Acquires a key expected to be free and returns the grant's token. */
export async function hold(client: RawClient, key: string, fields: Record<string, unknown> = {}): Promise<number> {
  const reply = await acquire(client, key, fields);
  expect(reply).toMatchObject({ ok: true, acquired: true });
  return num(reply.token);
}

/**
 * Sends an acquire expected to queue: resolves with its `queued` message and
 * leaves the reply to be awaited with `client.reply(id)`.
 */
export async function enqueue(
  client: RawClient,
  key: string,
  fields: Record<string, unknown> = {},
): Promise<{ id: number; queued: Frame }> {
  const id = client.id();
  client.send({ op: 'acquire', id, key, ...fields });
  const queued = await client.next((m) => (m.type === 'queued' && m.id === id) || (m.type === 'reply' && m.id === id), {
    label: `queued ${id} on ${JSON.stringify(key)}`,
  });
  expect(queued).toMatchObject({ type: 'queued', id, key });
  return { id, queued };
}

/** The `status` reply of a key. */
export async function status(client: RawClient, key: string): Promise<Frame> {
  const reply = await client.request({ op: 'status', key });
  expect(reply.ok).toBe(true);
  return reply;
}

/** Sessions of a key's queue, in grant order. */
export async function queueOf(client: RawClient, key: string): Promise<unknown[]> {
  const reply = await status(client, key);
  return (reply.queue as { session: unknown }[]).map((w) => w.session);
}

/** Sessions holding a key. */
export async function holdersOf(client: RawClient, key: string): Promise<unknown[]> {
  const reply = await status(client, key);
  return (reply.holders as { session: unknown }[]).map((h) => h.session);
}

/** Starts a watch and returns its reply (the snapshot). */
export async function watch(client: RawClient, prefix: string, fields: Record<string, unknown> = {}): Promise<Frame> {
  const reply = await client.request({ op: 'watch', prefix, ...fields });
  expect(reply).toMatchObject({ ok: true, truncated: false });
  return reply;
}
