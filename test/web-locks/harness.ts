/**
 * The tiny harness the Web Locks suites run on. It imports nothing at run
 * time (only types), so the suites run unchanged in Node (`node.test.ts`)
 * and inside a browser page (`runSuites()` in `index.ts`).
 */
import type { LockClient, LockManager } from '@lockwire/client';

/** What a case gets: the page's own client, and more clients standing in for frames and workers. */
export interface WebLocksContext {
  /** The client of the "window" running the case. */
  readonly client: LockClient;
  /** `client.locks`: what the ported case calls `navigator.locks`. */
  readonly locks: LockManager;
  /** Opens another client: a frame, worker or tab. Closing it is removing the frame. Closed after the case. */
  connect(): Promise<LockClient>;
  /** A lock name unique to this case. */
  uniqueName(): string;
}

/** One ported web-platform-tests case, named exactly after the case it ports. */
export interface WebLocksCase {
  readonly name: string;
  run(t: WebLocksContext): Promise<void>;
}

/** The cases ported from one `web-locks/*.https.any.js` (or `.html`) file. */
export interface WebLocksSuite {
  readonly name: string;
  readonly cases: readonly WebLocksCase[];
}

/** Connects a new client to the server under test. */
export type Connect = () => Promise<LockClient>;

export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function assertEquals(actual: unknown, expected: unknown, message: string): void {
  if (!Object.is(actual, expected)) {
    throw new AssertionError(`${message}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

export function assertArrayEquals(actual: readonly unknown[], expected: readonly unknown[], message: string): void {
  const same = actual.length === expected.length && actual.every((value, i) => Object.is(value, expected[i]));
  if (!same) throw new AssertionError(`${message}: expected ${show(expected)}, got ${show(actual)}`);
}

/**
 * Awaits `promise` and checks it rejects: with a `TypeError`, with a
 * `DOMException` of the given name, or with exactly the given value.
 */
export async function assertRejects(
  promise: Promise<unknown>,
  expected: 'TypeError' | 'NotSupportedError' | 'AbortError' | { value: unknown },
  message: string,
): Promise<void> {
  let outcome: { rejected: false; value: unknown } | { rejected: true; error: unknown };
  try {
    outcome = { rejected: false, value: await within(promise, `${message} (the rejection)`) };
  } catch (error) {
    if (error instanceof AssertionError) throw error;
    outcome = { rejected: true, error };
  }
  if (!outcome.rejected) throw new AssertionError(`${message}: resolved with ${show(outcome.value)}`);
  const { error } = outcome;
  if (typeof expected === 'object') {
    assertEquals(error, expected.value, message);
  } else if (expected === 'TypeError') {
    assert(error instanceof TypeError, `${message}: expected a TypeError, got ${show(error)}`);
  } else {
    const ok = error instanceof DOMException && error.name === expected;
    assert(ok, `${message}: expected a ${expected} DOMException, got ${show(error)}`);
  }
}

/** Rejects with an AssertionError when `promise` has not settled within `ms`: a bounded wait, never a sleep. */
export function within<T>(promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AssertionError(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A promise that never settles: a callback returning it holds its lock until the lock is stolen or lost. */
export function neverSettled(): Promise<never> {
  return new Promise<never>(() => undefined);
}

/** Ignores the outcome of a request the case does not await (its rejection on cleanup is expected). */
export function background(promise: Promise<unknown>): void {
  promise.catch(() => undefined);
}

/**
 * Resolves once the server queue of `name` holds `count` waiters, seen
 * through `observer`'s watch (its snapshot, then its events).
 */
export async function untilQueued(observer: LockClient, name: string, count: number): Promise<void> {
  const reached = deferred();
  const watch = await observer.watch(name, (event) => {
    if (event.key === name && event.waiters >= count) reached.resolve();
  });
  try {
    const status = watch.snapshot.locks.find((lock) => lock.key === name);
    if ((status?.queue.length ?? 0) >= count) reached.resolve();
    await within(reached.promise, `${count} waiter(s) queued on ${show(name)}`);
  } finally {
    await watch.close();
  }
}

/** `request` without its overloads, to pass the wrong arguments the binding tests pass. */
export function untypedRequest(locks: LockManager): (...args: unknown[]) => Promise<unknown> {
  return (...args) => (locks.request as (...a: unknown[]) => Promise<unknown>).apply(locks, args);
}

function show(value: unknown): string {
  if (value instanceof Error || value instanceof DOMException) return `${value.name}: ${value.message}`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Runs one case with a fresh window client; every client it opened is closed afterwards. */
export async function runCase(connect: Connect, testCase: WebLocksCase, caseIndex: number): Promise<void> {
  const clients: LockClient[] = [];
  const open = async () => {
    const client = await connect();
    clients.push(client);
    return client;
  };
  const client = await open();
  let names = 0;
  const context: WebLocksContext = {
    client,
    locks: client.locks,
    connect: open,
    uniqueName: () => `wpt:${caseIndex}:${testCase.name}:${names++}`,
  };
  try {
    await testCase.run(context);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
