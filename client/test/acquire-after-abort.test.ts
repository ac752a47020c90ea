import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockClient, type Lease } from '../src/node.js';
import { LockController } from '../src/react/lock-controller.js';
import { recordingTransport, startHarness, within, type Harness } from './fixtures.js';

/**
 * An acquire given up while queued whose grant is already on its way (it
 * raced the cancel), and an acquire of the same key made on the same client
 * in the same tick as the give-up. Sent at once, that acquire reaches the
 * server while the session holds the late grant, so it is answered with
 * that very hold, which the client then hands back: the caller would hold
 * a lease the server released under it.
 */
let h: Harness;
let holder: Awaited<ReturnType<Harness['connect']>>;
const waiters: LockClient[] = [];

beforeEach(async () => {
  h = await startHarness();
  holder = await h.connect();
});
afterEach(async () => {
  await Promise.all(waiters.splice(0).map((waiter) => waiter.close()));
  await h.close();
});

/**
 * Connects a waiter whose acquire of `key`, started by `queue`, is queued
 * behind `holder`, then has `holder` release the key; when the grant
 * arrives, before the client reads it, `giveUp` runs (it gives the acquire
 * up and starts the next one). Resolves once the grant was seen, with the
 * frames the waiter sent, the late grant's token and what `giveUp` returned.
 */
async function raceGrant<T>(
  key: string,
  queue: (waiter: LockClient) => void,
  giveUp: (waiter: LockClient) => T,
): Promise<{ waiter: LockClient; sent: Record<string, unknown>[]; lateToken: number; next: T }> {
  const first = await holder.acquire(key);
  let acquireId: unknown;
  let seen!: (late: { token: number; next: T }) => void;
  const grantSeen = new Promise<{ token: number; next: T }>((resolve) => (seen = resolve));
  let waiterRef: LockClient | undefined;
  const { transport, sent } = recordingTransport((frame) => {
    if (frame.type !== 'reply' || frame.id !== acquireId || frame.acquired !== true || !waiterRef) return;
    seen({ token: Number(frame.token), next: giveUp(waiterRef) });
  });
  // Connected from the client's source, as `LockController` takes it.
  const waiter = await LockClient.connect(h.server.url, { transport });
  waiters.push(waiter);
  waiterRef = waiter;
  queue(waiter);
  await within(
    (async () => {
      while ((await holder.status(key)).queue.length === 0) await waiter.ping();
    })(),
    2000,
    'the waiter in the queue',
  );
  acquireId = sent.find((frame) => frame.op === 'acquire')?.id;
  await first?.release();
  const late = await within(grantSeen, 2000, 'the grant that races the give-up');
  return { waiter, sent, lateToken: late.token, next: late.next };
}

/** Asserts that `lease` is `waiter`'s own new hold of `key`, also after everything it sent before was answered. */
async function holdsOwnLease(waiter: LockClient, key: string, lease: Lease | null, lateToken: number): Promise<void> {
  await waiter.ping();
  expect(lease).toMatchObject({ key, held: true });
  expect(lease?.token).toBeGreaterThan(lateToken);
  expect(waiter.leases.get(key)).toBe(lease);
  const status = await holder.status(key);
  expect(status.holders.map((holding) => [holding.session, holding.token])).toEqual([[waiter.session, lease?.token]]);
}

describe('an acquire of the key made in the same tick as an abort whose grant raced the cancel', () => {
  it('is sent only once the late grant was handed back, and holds a lease of its own', async () => {
    const controller = new AbortController();
    const { waiter, sent, lateToken, next } = await raceGrant(
      'doc:1',
      (waiter) => void waiter.acquire('doc:1', { signal: controller.signal }).catch(() => undefined),
      (waiter) => {
        controller.abort(new Error('gave up'));
        return waiter.acquire('doc:1');
      },
    );

    const lease = await within(next, 2000, 'the next acquire');
    await holdsOwnLease(waiter, 'doc:1', lease, lateToken);
    expect(sent.map((frame) => frame.op).filter((op) => op !== 'ping')).toEqual([
      'acquire',
      'cancel',
      'release',
      'acquire',
    ]);
  });

  it('made after a useLock release that cancelled the waiting request, is sent only once the late grant was handed back', async () => {
    let lock: LockController | undefined;
    const { waiter, sent, lateToken, next } = await raceGrant(
      'doc:2',
      (waiter) => {
        lock = new LockController(waiter, 'doc:2', () => ({ trackPosition: false }));
        lock.acquire();
      },
      (waiter) => {
        void lock?.release();
        return waiter.acquire('doc:2');
      },
    );

    const lease = await within(next, 2000, 'the next acquire');
    await holdsOwnLease(waiter, 'doc:2', lease, lateToken);
    expect(lock?.getSnapshot().status).toBe('idle');
    expect(sent.map((frame) => frame.op).filter((op) => op !== 'ping')).toEqual([
      'acquire',
      'cancel',
      'release',
      'acquire',
    ]);
  });
});
