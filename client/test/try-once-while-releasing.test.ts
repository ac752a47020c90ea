import { afterEach, describe, expect, it, vi } from 'vitest';
import type { LockClient } from '@lockwire/client';
import type { FakeConnection } from './fake-server.js';
import { within } from './fixtures.js';
import { pauseGate, settled } from './pause-gate.js';
import { startReleaseRefusingServer, type ReleaseRefusingServer } from './release-refusing-server.js';

vi.mock('../src/reconnect.js', async (importOriginal) =>
  (await import('./pause-gate.js')).withGatedPause(await importOriginal<typeof import('../src/reconnect.js')>()),
);

/**
 * Acquires with a bounded `acquireTimeout` (`0`: try once) and `ifAvailable`
 * Web Lock requests while the client lets go of a hold of the key in the
 * background: a `withLock` release the server refused and the client asks
 * again (for as long as the server refuses it, e.g. during a store outage),
 * or the late grant of an aborted request. The session holds the key
 * meanwhile, so a try-once acquire is not granted, and the wait for the
 * hold counts against the acquire's timeout. The pause gate holds the
 * client's timers: the release's backoff and the acquire's timeout fire
 * when a test resumes them.
 */
let refusing: ReleaseRefusingServer;
let client: LockClient;
let server: FakeConnection;

/** Connects over a server that leaves acquire, cancel and release to the test and refuses with store_unavailable. */
async function setup() {
  refusing = await startReleaseRefusingServer({ refusal: 'store_unavailable' });
  ({ client, server } = refusing);
}
afterEach(async () => {
  vi.restoreAllMocks();
  await refusing.close();
});

/** Resolves once the client handled every reply sent before: the answer to a ping, and the microtasks it queued. */
async function acceptedHandled(): Promise<void> {
  await client.ping();
  await settled();
}

describe('a try-once acquire while the client lets go of a hold of the key in the background', () => {
  it('acquire() with acquireTimeout 0 resolves null at once, sending nothing, while a refused withLock release is asked again', async () => {
    await setup();
    await refusing.withLockReleaseRefused();
    const tryOnce = client.acquire('k', { acquireTimeout: 0 });
    tryOnce.catch(() => undefined);

    await expect(within(tryOnce, 1000, 'the try-once acquire to settle')).resolves.toBeNull();
    expect(await refusing.acquiresArrived()).toHaveLength(1);
    // The hold being let go of stays the session's, and the client's lease of it stays held.
    expect(client.leases.get('k')).toMatchObject({ token: 7, held: true });
  });

  it('acquireLock() with acquireTimeout 0 resolves false at once, and withLock rejects not_acquired', async () => {
    await setup();
    await refusing.withLockReleaseRefused();
    const tryOnce = client.acquireLock('k', { acquireTimeout: 0 });
    tryOnce.catch(() => undefined);
    await expect(within(tryOnce, 1000, 'the try-once acquireLock to settle')).resolves.toBe(false);

    const withLock = client.withLock('k', () => 'ran', { acquireTimeout: 0 });
    withLock.catch(() => undefined);
    await expect(within(withLock, 1000, 'the try-once withLock to settle')).rejects.toMatchObject({
      code: 'not_acquired',
    });
    expect(await refusing.acquiresArrived()).toHaveLength(1);
  });

  it('a try-once acquire made once the release was accepted is sent and granted a hold of its own', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    await refusing.acceptRetry(retry);
    await acceptedHandled();

    const tryOnce = client.acquire('k', { acquireTimeout: 0 });
    const acquire = await refusing.grantNext(8);
    expect(acquire).toMatchObject({ key: 'k', acquireTimeout: 0 });
    expect(await within(tryOnce)).toMatchObject({ token: 8, held: true });
  });
});

describe('an acquire with a finite acquireTimeout while the client lets go of a hold of the key', () => {
  it('resolves null, sending nothing, when its timeout runs out before the hold is gone', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    const bounded = client.acquire('k', { acquireTimeout: 5000 });
    bounded.catch(() => undefined);

    const timeout = await pauseGate.next();
    expect(timeout.ms).toBe(5000);
    timeout.resume();
    await expect(within(bounded, 1000, 'the bounded acquire to settle')).resolves.toBeNull();
    expect(await refusing.acquiresArrived()).toHaveLength(1);
    // The release goes on: once accepted, the next acquire is sent at once.
    await refusing.acceptRetry(retry);
    await acceptedHandled();
    const next = client.acquire('k', { acquireTimeout: 5000 });
    await refusing.grantNext(8);
    expect(await within(next)).toMatchObject({ token: 8 });
  });

  it('is sent with only the time left once the hold is gone first, and its timer ends', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    const bounded = client.acquire('k', { acquireTimeout: 5000 });
    const timeout = await pauseGate.next();

    await refusing.acceptRetry(retry);
    const acquire = await refusing.grantNext(8);
    expect(acquire.acquireTimeout).toBeGreaterThan(0);
    expect(acquire.acquireTimeout).toBeLessThanOrEqual(5000);
    expect(await within(bounded)).toMatchObject({ token: 8, held: true });
    expect(timeout.signal.aborted).toBe(true);
  });

  it('resolves null, sending nothing, when the hold is gone after its timeout ran out but before its timer fired', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    let now = performance.now();
    vi.spyOn(performance, 'now').mockImplementation(() => now);
    const bounded = client.acquire('k', { acquireTimeout: 50 });
    bounded.catch(() => undefined);
    // The timer is held: the time runs out, and the hold goes, before it fires.
    const timeout = await pauseGate.next();
    now += 60;

    await refusing.acceptRetry(retry);
    await expect(within(bounded, 1000, 'the bounded acquire to settle')).resolves.toBeNull();
    expect(await refusing.acquiresArrived()).toHaveLength(1);
    expect(timeout.signal.aborted).toBe(true);
  });

  it('an acquire without acquireTimeout waits for the hold as long as it takes and is sent without one', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    const unbounded = client.acquire('k');
    await client.ping();
    // Only the release's own backoff is waited for: no timer runs for the acquire.
    expect(pauseGate.waiting).toBe(0);

    await refusing.acceptRetry(retry);
    const acquire = await refusing.grantNext(8);
    expect(acquire).not.toHaveProperty('acquireTimeout');
    expect(await within(unbounded)).toMatchObject({ token: 8 });
  });

  it('waitForLock with a timeout is sent at once with that timeout, not held back by the hold let go of', async () => {
    await setup();
    await refusing.withLockReleaseRefused();
    const waiting = client.waitForLock('k', { timeout: 3000 });

    const wait = await server.nextRequest('wait');
    expect(wait).toMatchObject({ key: 'k', timeout: 3000 });
    server.reply(wait.id, { free: false });
    expect(await within(waiting)).toBe(false);
  });
});

describe('an ifAvailable Web Lock request while the client lets go of a hold of the name', () => {
  it('gets null at once while the late grant of an aborted request of the name is released', async () => {
    await setup();
    await refusing.lateGrantWithRefusedRelease((signal) => client.locks.request('k', { signal }, () => 'first'));
    await pauseGate.next();

    let called = false;
    const ifAvailable = client.locks.request('k', { ifAvailable: true }, (lock) => {
      called = true;
      return lock;
    });
    ifAvailable.catch(() => undefined);
    await expect(within(ifAvailable, 1000, 'the ifAvailable request to settle')).resolves.toBeNull();
    expect(called).toBe(true);
    expect(await refusing.acquiresArrived()).toHaveLength(1);
  });

  it('gets null at once while a refused withLock release of the name is asked again, and holds no later request back', async () => {
    await setup();
    await refusing.withLockReleaseRefused();
    const ifAvailable = client.locks.request('k', { ifAvailable: true }, (lock) => lock);
    const other = client.locks.request('other', (lock) => lock?.token);

    await expect(within(ifAvailable, 1000, 'the ifAvailable request to settle')).resolves.toBeNull();
    const acquire = await refusing.grantNext(3);
    expect(acquire).toMatchObject({ key: 'other' });
    await refusing.acceptRelease();
    expect(await within(other)).toBe(3);
  });

  it('behind a request of the name waiting for the hold, gets null, and a request of another name is not held back', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    const tokens: (number | undefined)[] = [];
    const waiting = client.locks.request('k', { mode: 'shared' }, (lock) => {
      tokens.push(lock?.token);
      return 'waited';
    });
    const ifAvailable = client.locks.request('k', { mode: 'shared', ifAvailable: true }, (lock) => lock);
    const other = client.locks.request('other', (lock) => lock?.token);
    waiting.catch(() => undefined);
    other.catch(() => undefined);

    await expect(within(ifAvailable, 1000, 'the ifAvailable request to settle')).resolves.toBeNull();
    expect(await refusing.grantNext(3)).toMatchObject({ key: 'other' });
    await refusing.acceptRelease();
    expect(await within(other)).toBe(3);
    expect(tokens).toEqual([]);

    // Once the hold is gone the waiting request asks the server and gets a hold of its own.
    await refusing.acceptRetry(retry);
    expect(await refusing.grantNext(8)).toMatchObject({ key: 'k', mode: 'shared' });
    await refusing.acceptRelease();
    expect(await within(waiting)).toBe('waited');
    expect(tokens).toEqual([8]);
  });
});
