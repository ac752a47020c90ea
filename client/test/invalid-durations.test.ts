import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockError, type LockClient } from '@lockwire/client';
import { recordingTransport, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let alice: LockClient;
let bob: LockClient;
/** The frames alice sent. */
let sent: Record<string, unknown>[];

beforeEach(async () => {
  h = await startHarness();
  const recording = recordingTransport();
  sent = recording.sent;
  alice = await h.connect({ transport: recording.transport });
  bob = await h.connect();
});
afterEach(() => h.close());

/** The ops alice sent, in order. */
function ops(): unknown[] {
  return sent.map((frame) => frame.op);
}

/** Resolves with what `promise` rejected with (bounded: a call taken as "no limit" would never settle). */
async function refusal(promise: Promise<unknown>): Promise<unknown> {
  return within(promise.then(() => 'settled without refusal', (error: unknown) => error), 2000, 'the refusal');
}

describe('durations the protocol refuses', () => {
  // JSON turns NaN and the infinities into null, which the server reads as "no limit".
  it.each([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -1, 2_147_483_648])(
    'acquire with holdTimeout %s rejects with a bad_request LockError naming the option and sends nothing',
    async (holdTimeout) => {
      const error = await refusal(alice.acquire('nan:hold', { holdTimeout }));
      expect(error).toBeInstanceOf(LockError);
      expect(error).toMatchObject({ code: 'bad_request', message: expect.stringContaining('holdTimeout') });
      expect(ops()).not.toContain('acquire');
      expect((await bob.status('nan:hold')).locked).toBe(false);
    },
  );

  it('acquire with an infinite acquireTimeout is refused instead of queueing without limit', async () => {
    await bob.acquire('nan:queue');
    const error = await refusal(alice.acquire('nan:queue', { acquireTimeout: Number.POSITIVE_INFINITY }));
    expect(error).toMatchObject({ code: 'bad_request', message: expect.stringContaining('acquireTimeout') });
    expect((await bob.status('nan:queue')).queue).toEqual([]);
  });

  it('withLock and acquireLock with a NaN duration are refused without calling back or locking', async () => {
    let called = false;
    const withLock = alice.withLock('nan:with', () => (called = true), { acquireTimeout: Number.NaN });
    expect(await refusal(withLock)).toMatchObject({ code: 'bad_request' });
    expect(await refusal(alice.acquireLock('nan:with', { holdTimeout: Number.NaN }))).toMatchObject({
      code: 'bad_request',
    });
    expect(called).toBe(false);
    expect(ops()).not.toContain('acquire');
  });

  it('lease.extend(NaN) is refused with bad_request and keeps the expiry on the lease and the server', async () => {
    const lease = await alice.acquire('nan:extend', { holdTimeout: 5000 });
    if (!lease) throw new Error('not granted');
    const before = lease.expiresAt;
    for (const holdTimeout of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const error = await refusal(lease.extend(holdTimeout));
      expect(error).toMatchObject({ code: 'bad_request', message: expect.stringContaining('holdTimeout') });
    }
    expect(ops()).not.toContain('extend');
    expect(lease.expiresAt).toBe(before);
    expect((await bob.status('nan:extend')).holders[0]?.expiresAt).toBe(before);
  });

  it('wait and waitForLock with a NaN timeout are refused instead of waiting without limit', async () => {
    await bob.acquire('nan:wait');
    const error = await refusal(alice.wait('nan:wait', { timeout: Number.NaN }));
    expect(error).toMatchObject({ code: 'bad_request', message: expect.stringContaining('timeout') });
    expect(await refusal(alice.waitForLock('nan:wait', { timeout: Number.NaN }))).toMatchObject({
      code: 'bad_request',
    });
    expect(ops()).not.toContain('wait');
  });

  it('null, 0 and 2147483647 are still accepted', async () => {
    const lease = await alice.acquire('nan:edge', { acquireTimeout: 0, holdTimeout: 2_147_483_647 });
    if (!lease) throw new Error('not granted');
    expect(lease.expiresAt).toBe(h.clock.now() + 2_147_483_647);
    expect(await lease.extend(null)).toBeNull();
    expect(await alice.wait('nan:free', { timeout: 0 })).toBe(true);
    expect(await alice.acquire('nan:edge2', { acquireTimeout: null, holdTimeout: null })).not.toBeNull();
  });
});
