/**
 * Prefect's lock-manager tests (`tests/locking/test_memory.py` and
 * `test_filesystem.py`: `TestMemoryLockManager`, `TestFileSystemLockManager`),
 * ported to the client's Prefect face. Prefect names the holder with a
 * string; here a holder is a connection, so `holder1` and `holder2` are two
 * clients. Prefect's seconds become milliseconds, and its sleeps become steps
 * of the server's manual clock.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLockServer, createManualClock, type LockServer, type ManualClock } from '@lockwire/server';
import { LockClient, LockError } from '@lockwire/client';

let server: LockServer;
let clock: ManualClock;
let holder1: LockClient;
let holder2: LockClient;
let keySeq = 0;

/** A fresh key per test, as Prefect's `str(uuid4())`. */
const newKey = () => `prefect:${++keySeq}`;

/** Bounded wait for a call that should settle once the server has acted. */
function within<T>(promise: Promise<T>, ms = 2000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Proves the server has taken in every earlier request of `client`: frames
 * of one connection reach the lock table in order, so after this round trip
 * a blocking call sent before it is queued (and its timeout armed).
 */
async function settled(client: LockClient): Promise<void> {
  await client.ping();
}

beforeEach(async () => {
  clock = createManualClock();
  server = await createLockServer({ port: 0, clock, heartbeatInterval: 0 });
  holder1 = await LockClient.connect(server.url);
  holder2 = await LockClient.connect(server.url);
});

afterEach(async () => {
  await Promise.all([holder1.close(), holder2.close()]);
  await server.close();
});

describe('Prefect lock manager, ported', () => {
  it('test_acquire_lock: a holder acquires a free key and releasing it unlocks the key', async () => {
    const key = newKey();
    expect(await holder1.acquireLock(key)).toBe(true);
    expect(await holder1.isLocked(key)).toBe(true);
    await holder1.releaseLock(key);
    expect(await holder1.isLocked(key)).toBe(false);
  });

  it('test_acquire_lock_idempotent: acquiring a key the holder already holds succeeds again', async () => {
    const key = newKey();
    expect(await holder1.acquireLock(key)).toBe(true);
    expect(await holder1.acquireLock(key)).toBe(true);
    expect(await holder1.isLocked(key)).toBe(true);
    await holder1.releaseLock(key);
    expect(await holder1.isLocked(key)).toBe(false);
  });

  it('test_acquire_lock_with_hold_timeout: the lock is free once its hold timeout has passed', async () => {
    const key = newKey();
    expect(await holder1.acquireLock(key, { holdTimeout: 100 })).toBe(true);
    expect(await holder1.isLocked(key)).toBe(true);
    clock.advance(200);
    expect(await holder1.isLocked(key)).toBe(false);
    expect(await holder1.isLockHolder(key)).toBe(false);
  });

  it('test_acquire_lock_with_acquire_timeout: another holder gives up after its acquire timeout', async () => {
    const key = newKey();
    expect(await holder1.acquireLock(key)).toBe(true);
    expect(await holder1.isLocked(key)).toBe(true);
    const attempt = holder2.acquireLock(key, { acquireTimeout: 100 });
    await settled(holder2);
    clock.advance(101);
    expect(await within(attempt)).toBe(false);
    expect(await holder1.isLockHolder(key)).toBe(true);
    await holder1.releaseLock(key);
    expect(await holder1.isLocked(key)).toBe(false);
  });

  it('test_acquire_lock_when_previously_holder_timed_out: a blocked holder gets the key when the hold times out', async () => {
    const key = newKey();
    expect(await holder1.acquireLock(key, { holdTimeout: 100 })).toBe(true);
    expect(await holder1.isLocked(key)).toBe(true);
    const attempt = holder2.acquireLock(key);
    await settled(holder2);
    expect((await holder2.status(key)).queue).toHaveLength(1);
    clock.advance(101);
    expect(await within(attempt)).toBe(true);
    expect(await holder2.isLocked(key)).toBe(true);
    expect(await holder2.isLockHolder(key)).toBe(true);
    await holder2.releaseLock(key);
    expect(await holder2.isLocked(key)).toBe(false);
  });

  it('test_raises_if_releasing_with_wrong_holder: releasing a key held by another holder fails with not_holder', async () => {
    const key = newKey();
    expect(await holder1.acquireLock(key)).toBe(true);
    expect(await holder1.isLocked(key)).toBe(true);
    const error = await holder2.releaseLock(key).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockError);
    expect(error).toMatchObject({ code: 'not_holder' });
    expect((error as LockError).message).toContain(key);
    expect(await holder1.isLockHolder(key)).toBe(true);
  });

  it('test_is_lock_holder: only the holder that acquired the key is its holder', async () => {
    const key = newKey();
    expect(await holder1.isLockHolder(key)).toBe(false);
    expect(await holder1.acquireLock(key)).toBe(true);
    expect(await holder1.isLockHolder(key)).toBe(true);
    expect(await holder2.isLockHolder(key)).toBe(false);
  });

  it('test_wait_for_lock: waiting returns true once the hold times out, and the key is free', async () => {
    const key = newKey();
    expect(await holder1.acquireLock(key, { holdTimeout: 100 })).toBe(true);
    expect(await holder1.isLocked(key)).toBe(true);
    const waiting = holder2.waitForLock(key);
    await settled(holder2);
    clock.advance(101);
    expect(await within(waiting)).toBe(true);
    expect(await holder2.isLocked(key)).toBe(false);
  });

  it('test_wait_for_lock_with_timeout: waiting returns false when the key stays held past the timeout', async () => {
    const key = newKey();
    expect(await holder1.acquireLock(key)).toBe(true);
    expect(await holder1.isLocked(key)).toBe(true);
    const waiting = holder2.waitForLock(key, { timeout: 100 });
    await settled(holder2);
    clock.advance(101);
    expect(await within(waiting)).toBe(false);
    expect(await holder1.isLocked(key)).toBe(true);
    await holder1.releaseLock(key);
    expect(await holder1.isLocked(key)).toBe(false);
  });

  it('test_wait_for_lock_never_been_locked: waiting on a key nobody ever locked returns true at once', async () => {
    const key = newKey();
    expect(await holder1.isLocked(key)).toBe(false);
    expect(await within(holder1.waitForLock(key))).toBe(true);
  });

  it('test_locking_works_across_threads: a holder blocked on the key gets it when the other releases', async () => {
    const key = newKey();
    expect(await holder1.acquireLock(key)).toBe(true);
    expect(await holder1.isLocked(key)).toBe(true);
    const blocked = holder2.acquireLock(key);
    await settled(holder2);
    expect(await holder2.isLockHolder(key)).toBe(false);
    await holder1.releaseLock(key);
    expect(await within(blocked)).toBe(true);
    expect(await holder1.isLocked(key)).toBe(true);
    expect(await holder2.isLockHolder(key)).toBe(true);
    expect(await holder1.isLockHolder(key)).toBe(false);
  });
});
