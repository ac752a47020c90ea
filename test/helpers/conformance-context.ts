import { afterEach, beforeEach, expect } from 'vitest';
import { createManualClock, systemClock, type Clock, type LockServerOptions, type ManualClock } from '@lockwire/server';
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
  /** Lets `ms` pass: advances a manual clock (firing due timers at once), no-op on real time. */
  elapse(ms: number): void;
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

  beforeEach(async () => {
    manualClock = target.manualClock ? createManualClock() : undefined;
    const clock: Clock = manualClock ?? systemClock;
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
        manualClock?.advance(ms);
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
    if (manualClock) expect(manualClock.pending(), 'timers left after the server closed').toBe(0);
  });

  return () => {
    if (!current) throw new Error('conformance context used outside a test');
    return current;
  };
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
