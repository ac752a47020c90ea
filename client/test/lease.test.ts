import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockError, type LockClient } from '@lockwire/client';
import { abortedWith, nextEvent, releaseWatchingTransport, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let alice: LockClient;
let bob: LockClient;

beforeEach(async () => {
  h = await startHarness();
  alice = await h.connect();
  bob = await h.connect();
});
afterEach(() => h.close());

describe('leases', () => {
  it('acquire resolves a lease with a fencing token that status shows, and release frees the key', async () => {
    const lease = await alice.acquire('doc:42', { holdTimeout: 30_000, meta: { user: 'ana' } });
    expect(lease).not.toBeNull();
    if (!lease) return;
    expect(lease.key).toBe('doc:42');
    expect(lease.token).toBeGreaterThan(0);
    expect(lease.expiresAt).toBe(h.clock.now() + 30_000);
    expect(lease.held).toBe(true);

    const status = await bob.status('doc:42');
    expect(status.locked).toBe(true);
    expect(status.heldByYou).toBe(false);
    expect(status.holders).toEqual([
      expect.objectContaining({ session: alice.session, token: lease.token, meta: { user: 'ana' } }),
    ]);

    await lease.release();
    expect(lease.state).toBe('released');
    expect(lease.signal.aborted).toBe(false);
    expect((await bob.status('doc:42')).locked).toBe(false);
  });

  it('a second release of the same lease is a no-op, even after someone else took the key', async () => {
    const lease = await alice.acquire('doc:1');
    await lease?.release();
    const other = await bob.acquire('doc:1');
    await lease?.release();
    expect((await bob.status('doc:1')).holders.map((holder) => holder.session)).toEqual([bob.session]);
    expect(other?.held).toBe(true);
  });

  it('acquire resolves null when the key stays held for the whole acquireTimeout', async () => {
    await alice.acquire('doc:2');
    expect(await bob.acquire('doc:2', { acquireTimeout: 0 })).toBeNull();

    let queuedAt: number | undefined;
    const waiting = bob.acquire('doc:2', { acquireTimeout: 1000, onQueued: (position) => (queuedAt = position) });
    await bob.ping();
    h.clock.advance(1001);
    expect(await within(waiting)).toBeNull();
    expect(queuedAt).toBe(1);
    expect((await bob.status('doc:2')).queue).toEqual([]);
  });

  it('a queued acquire reports its position and is granted when the holder releases', async () => {
    const first = await alice.acquire('room:7');
    const positions: number[] = [];
    let reportQueued!: () => void;
    const queued = new Promise<void>((resolve) => (reportQueued = resolve));
    const waiting = bob.acquire('room:7', {
      onQueued: (position) => {
        positions.push(position);
        reportQueued();
      },
    });
    await within(queued);
    expect(positions).toEqual([1]);
    await first?.release();
    const lease = await within(waiting);
    expect(lease?.held).toBe(true);
    expect(lease?.token).toBeGreaterThan(first?.token ?? Infinity);
  });

  it('re-acquiring a held key resolves the same lease and keeps its expiry', async () => {
    const lease = await alice.acquire('doc:3', { holdTimeout: 5000 });
    h.clock.advance(1000);
    const again = await alice.acquire('doc:3', { holdTimeout: 9000 });
    expect(again).toBe(lease);
    expect(again?.expiresAt).toBe(h.clock.now() - 1000 + 5000);
  });

  it('extend moves expiresAt and null removes the expiry', async () => {
    const lease = await alice.acquire('doc:4', { holdTimeout: 1000 });
    if (!lease) throw new Error('not granted');
    h.clock.advance(500);
    expect(await lease.extend(2000)).toBe(h.clock.now() + 2000);
    expect(lease.expiresAt).toBe(h.clock.now() + 2000);
    await lease.extend(null);
    expect(lease.expiresAt).toBeNull();
    expect((await alice.status('doc:4')).holders[0]?.expiresAt).toBeNull();
  });

  it('a hold timeout aborts the lease signal with reason expired and the lease is no longer held', async () => {
    const lease = await alice.acquire('doc:5', { holdTimeout: 1000 });
    if (!lease) throw new Error('not granted');
    const lost = nextEvent(alice, 'lost');
    h.clock.advance(999);
    expect((await alice.status('doc:5')).heldByYou).toBe(true);
    expect(lease.held).toBe(true);
    h.clock.advance(2);
    const reason = await abortedWith(lease.signal);
    expect(reason).toBeInstanceOf(LockError);
    expect(reason).toMatchObject({ code: 'expired' });
    expect(await lost).toEqual({ key: 'doc:5', token: lease.token, reason: 'expired' });
    expect(lease.held).toBe(false);
    expect(lease.state).toBe('lost');
    await lease.release();
    await expect(lease.extend(1000)).rejects.toMatchObject({ code: 'not_holder' });
  });

  it('a steal aborts the old holder lease with reason stolen and grants the thief at once', async () => {
    const lease = await alice.acquire('doc:6');
    const stolen = await bob.acquire('doc:6', { steal: true });
    expect(stolen?.held).toBe(true);
    expect(await abortedWith(lease?.signal ?? AbortSignal.abort())).toMatchObject({ code: 'stolen' });
    expect((await alice.status('doc:6')).holders.map((holder) => holder.session)).toEqual([bob.session]);
  });

  it('a revoke aborts the holder lease with reason revoked', async () => {
    const lease = await alice.acquire('doc:7');
    expect(await bob.revoke('doc:7')).toBe(1);
    expect(await abortedWith(lease?.signal ?? AbortSignal.abort())).toMatchObject({ code: 'revoked' });
    expect(alice.leases.size).toBe(0);
  });

  it('shared leases are held together', async () => {
    const a = await alice.acquire('cfg', { mode: 'shared' });
    const b = await bob.acquire('cfg', { mode: 'shared', acquireTimeout: 0 });
    expect(a?.mode).toBe('shared');
    expect(b?.held).toBe(true);
    expect((await alice.status('cfg')).holders).toHaveLength(2);
  });
});

describe('withLock and await using', () => {
  it('withLock runs the callback holding the lock and releases it afterwards', async () => {
    const result = await alice.withLock('job:nightly', async (lease) => {
      expect((await bob.status('job:nightly')).holders[0]?.token).toBe(lease.token);
      return 'done';
    });
    expect(result).toBe('done');
    expect((await bob.status('job:nightly')).locked).toBe(false);
  });

  it('withLock releases the lock when the callback throws', async () => {
    await expect(
      alice.withLock('job:fail', () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect((await bob.status('job:fail')).locked).toBe(false);
  });

  it('withLock rejects with not_acquired and never calls back when the key stays held', async () => {
    await bob.acquire('job:busy');
    let called = false;
    const attempt = alice.withLock('job:busy', () => (called = true), { acquireTimeout: 0 });
    await expect(attempt).rejects.toMatchObject({ name: 'LockError', code: 'not_acquired' });
    expect(called).toBe(false);
  });

  it('withLock on a key this client already holds runs within that hold and leaves it held', async () => {
    const outer = await alice.acquire('job:nested');
    const token = await alice.withLock('job:nested', (inner) => {
      expect(inner).toBe(outer);
      return inner.token;
    });
    expect(token).toBe(outer?.token);
    expect(outer?.held).toBe(true);
    expect(outer?.signal.aborted).toBe(false);
    expect((await bob.status('job:nested')).holders.map((holder) => [holder.session, holder.token])).toEqual([
      [alice.session, outer?.token],
    ]);
    // Still the outer holder's lock: its own release ends it.
    await outer?.release();
    expect((await bob.status('job:nested')).locked).toBe(false);
  });

  it('withLock on a key this client already holds leaves the hold held when its callback throws', async () => {
    const outer = await alice.acquire('job:nested-fail');
    await expect(
      alice.withLock('job:nested-fail', () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(outer?.held).toBe(true);
    expect((await bob.status('job:nested-fail')).holders.map((holder) => holder.token)).toEqual([outer?.token]);
  });

  it('await using releases the lease when the scope ends', async () => {
    {
      await using lease = await alice.acquire('room:8', { signal: AbortSignal.timeout(5000) });
      expect(lease?.held).toBe(true);
      expect((await bob.status('room:8')).locked).toBe(true);
    }
    expect((await bob.status('room:8')).locked).toBe(false);
  });
});

describe('a release the server refuses', () => {
  /** A server whose sessions may send one frame, and one more per ms of its manual clock. */
  async function oneFrameAtATime() {
    const limited = await startHarness({ limits: { rateLimit: 1000, rateBurst: 1 } });
    cleanups.push(() => limited.close());
    return limited;
  }
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  it('rejects with the server code and leaves the lease held, and a second release() sends a new release that frees the key', async () => {
    const limited = await oneFrameAtATime();
    const carol = await limited.connect();
    const dave = await limited.connect();
    const lease = await carol.acquire('doc:9');
    if (!lease) throw new Error('doc:9 not granted');

    // The acquire took the only frame of the budget.
    await expect(lease.release()).rejects.toMatchObject({ name: 'LockError', code: 'rate_limited' });
    expect(lease.state).toBe('held');
    expect(lease.signal.aborted).toBe(false);
    expect(carol.leases.get('doc:9')).toBe(lease);
    expect((await dave.status('doc:9')).holders.map((holder) => holder.session)).toEqual([carol.session]);

    limited.clock.advance(1000);
    await within(lease.release());
    expect(lease.state).toBe('released');
    expect(carol.leases.size).toBe(0);
    expect((await dave.status('doc:9')).locked).toBe(false);
  });

  it('withLock resolves with the callback result and releases the lock once the server accepts the release', async () => {
    const limited = await oneFrameAtATime();
    const { transport, released } = releaseWatchingTransport();
    const carol = await limited.connect({ transport });
    const dave = await limited.connect();

    expect(await within(carol.withLock('job:refused', () => 'done'))).toBe('done');
    expect(carol.leases.get('job:refused')?.held).toBe(true);
    const accepted = released();
    limited.clock.advance(1000);
    await accepted;
    expect(carol.leases.size).toBe(0);
    expect((await dave.status('job:refused')).locked).toBe(false);
  });
});
