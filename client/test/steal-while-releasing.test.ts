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
 * Steals (`acquire` with `steal`, Web Lock requests with `steal`) made
 * while the client lets go of a hold of the key in the background: a
 * `withLock` release the server refused and the client asks again (for as
 * long as the server refuses it, e.g. during a store outage). A steal is
 * sent once that hold is gone; the server grants it at once, so no
 * `acquireTimeout` runs out meanwhile. The pause gate holds the client's
 * timers: the release's backoff fires when a test resumes it.
 */
let refusing: ReleaseRefusingServer;
let client: LockClient;
let server: FakeConnection;

/** Connects over a server that leaves acquire, cancel and release to the test and refuses with store_unavailable. */
async function setup() {
  refusing = await startReleaseRefusingServer({ refusal: 'store_unavailable' });
  ({ client, server } = refusing);
}
afterEach(() => refusing.close());

/** Resolves once the client handled every reply sent before: the answer to a ping, and the microtasks it queued. */
async function handled(): Promise<void> {
  await client.ping();
  await settled();
}

describe('an acquire with steal while the client lets go of a hold of the key', () => {
  it('with a finite acquireTimeout waits for the hold without a timer, and is sent with that timeout once it is gone', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    let outcome: unknown = 'pending';
    const steal = client.acquire('k', { steal: true, acquireTimeout: 50 });
    steal.then((value) => (outcome = value), (error: unknown) => (outcome = error));
    await handled();
    // No timer runs for the steal: its timeout cannot run out while it waits here.
    expect(pauseGate.waiting).toBe(0);
    expect(outcome).toBe('pending');
    expect(await refusing.acquiresArrived()).toHaveLength(1);

    await refusing.acceptRetry(retry);
    expect(await refusing.grantNext(8)).toMatchObject({ key: 'k', steal: true, acquireTimeout: 50 });
    expect(await within(steal)).toMatchObject({ token: 8, held: true });
  });

  it('with acquireTimeout 0 is sent at once, and rejects with the server refusal bad_request', async () => {
    await setup();
    await refusing.withLockReleaseRefused();
    const steal = client.acquire('k', { steal: true, acquireTimeout: 0 });
    steal.catch(() => undefined);

    const acquire = await server.nextRequest('acquire');
    expect(acquire).toMatchObject({ key: 'k', steal: true, acquireTimeout: 0 });
    refusing.refuse(acquire, 'bad_request');
    await expect(within(steal)).rejects.toMatchObject({ code: 'bad_request' });
  });
});

describe('a Web Lock steal while the client lets go of a hold of the name', () => {
  it('does not hold back a request of another name made after a later request of the stolen name', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    const order: string[] = [];
    const steal = client.locks.request('k', { steal: true }, (lock) => {
      order.push('steal');
      return lock?.token;
    });
    const after = client.locks.request('k', (lock) => {
      order.push('after');
      return lock?.token;
    });
    const other = client.locks.request('other', (lock) => {
      order.push('other');
      return lock?.token;
    });
    for (const pending of [steal, after, other]) pending.catch(() => undefined);

    expect(await refusing.grantNext(3)).toMatchObject({ key: 'other' });
    expect(await refusing.acceptRelease()).toMatchObject({ key: 'other' });
    expect(await within(other, 1000, "the other name's callback")).toBe(3);

    // Once the hold is gone the steal is granted, then the later request of its name.
    await refusing.acceptRetry(retry);
    expect(await refusing.grantNext(9)).toMatchObject({ key: 'k', steal: true });
    expect(await refusing.acceptRelease()).toMatchObject({ key: 'k' });
    expect(await within(steal)).toBe(9);
    expect(await refusing.grantNext(10)).toMatchObject({ key: 'k' });
    expect(await refusing.acceptRelease()).toMatchObject({ key: 'k' });
    expect(await within(after)).toBe(10);
    expect(order).toEqual(['other', 'steal', 'after']);
  });
});
