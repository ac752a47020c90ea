import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { LockClient } from '@lockwire/client';
import { recordingTransport, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let holder: LockClient;

beforeEach(async () => {
  h = await startHarness();
  holder = await h.connect();
});
afterEach(() => h.close());

/** Resolves once `client`'s acquire of `key` reports it joined the queue. */
function queuedAcquire(client: LockClient, key: string, signal: AbortSignal) {
  let reportQueued!: () => void;
  const queued = new Promise<void>((resolve) => (reportQueued = resolve));
  const result = client.acquire(key, { signal, onQueued: () => reportQueued() });
  return { result, queued: within(queued, 2000, 'the queued message') };
}

describe('AbortSignal on acquire', () => {
  it('an already aborted signal rejects with its reason and sends nothing', async () => {
    const { transport, sent } = recordingTransport();
    const client = await h.connect({ transport });
    const reason = new Error('gave up early');
    await expect(client.acquire('doc:1', { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    await client.ping();
    expect(sent.map((frame) => frame.op)).toEqual(['ping']);
  });

  it('aborting while queued sends cancel, rejects with the reason and leaves the queue empty', async () => {
    await holder.acquire('doc:2');
    const { transport, sent } = recordingTransport();
    const waiter = await h.connect({ transport });
    const controller = new AbortController();
    const attempt = queuedAcquire(waiter, 'doc:2', controller.signal);
    await attempt.queued;
    expect((await holder.status('doc:2')).queue).toHaveLength(1);

    const reason = new Error('user navigated away');
    controller.abort(reason);
    await expect(attempt.result).rejects.toBe(reason);
    expect(sent.map((frame) => frame.op)).toEqual(['acquire', 'cancel']);
    expect(sent[1]).toMatchObject({ target: sent[0]?.id });
    const status = await holder.status('doc:2');
    expect(status.queue).toEqual([]);
    expect(status.holders.map((h) => h.session)).toEqual([holder.session]);
  });

  it('aborting after the grant is ignored: the lease stays held', async () => {
    const controller = new AbortController();
    const lease = await holder.acquire('doc:3', { signal: controller.signal });
    controller.abort(new Error('too late'));
    expect(lease?.held).toBe(true);
    expect(lease?.signal.aborted).toBe(false);
    expect(await holder.isLockHolder('doc:3')).toBe(true);
  });

  it('a grant that arrives after the caller gave up is released at once', async () => {
    const first = await holder.acquire('doc:4');
    const controller = new AbortController();
    const reason = new Error('gave up');
    let acquireId: unknown;
    let accepted!: () => void;
    const wasAccepted = new Promise<void>((resolve) => (accepted = resolve));
    // The abort lands right before the client reads the grant: the grant has already left the server.
    const { transport, sent } = recordingTransport((frame) => {
      if (frame.type === 'reply' && frame.id === acquireId && frame.acquired === true) controller.abort(reason);
      if (frame.type === 'reply' && frame.released === true) queueMicrotask(accepted);
    });
    const waiter = await h.connect({ transport });
    const attempt = queuedAcquire(waiter, 'doc:4', controller.signal);
    const outcome = attempt.result.catch((error: unknown) => error);
    acquireId = sent[0]?.id;
    await attempt.queued;
    await first?.release();

    expect(await within(outcome)).toBe(reason);
    await within(wasAccepted, 2000, 'the release of the late grant');
    expect(sent.map((frame) => frame.op)).toEqual(['acquire', 'cancel', 'release']);
    expect(waiter.leases.size).toBe(0);
    const status = await holder.status('doc:4');
    expect(status.locked).toBe(false);
    expect(status.queue).toEqual([]);
  });

  it('a grant that arrives after the caller gave up is released again when the server refused its release', async () => {
    // Two frames per session, then one more per ms of the manual clock:
    // the waiter's acquire and cancel pass, its release does not.
    const limited = await startHarness({ limits: { rateLimit: 1000, rateBurst: 2 } });
    try {
      const owner = await limited.connect();
      const first = await owner.acquire('doc:4');
      const controller = new AbortController();
      const reason = new Error('gave up');
      let acquireId: unknown;
      let refused!: () => void;
      const wasRefused = new Promise<void>((resolve) => (refused = resolve));
      let accepted!: () => void;
      const wasAccepted = new Promise<void>((resolve) => (accepted = resolve));
      const { transport, sent } = recordingTransport((frame) => {
        if (frame.type !== 'reply') return;
        if (frame.id === acquireId && frame.acquired === true) controller.abort(reason);
        if (frame.ok === false) refused();
        if (frame.released === true) accepted();
      });
      const waiter = await limited.connect({ transport });
      const attempt = queuedAcquire(waiter, 'doc:4', controller.signal);
      const outcome = attempt.result.catch((error: unknown) => error);
      acquireId = sent[0]?.id;
      await attempt.queued;
      await first?.release();

      expect(await within(outcome)).toBe(reason);
      await within(wasRefused, 2000, 'the refused release');
      expect(waiter.leases.get('doc:4')?.held).toBe(true);
      limited.clock.advance(1000);
      await within(wasAccepted, 2000, 'the release the client sends again');
      const [acquire, cancel, ...releases] = sent.map((frame) => frame.op);
      expect([acquire, cancel, releases.length >= 2, new Set(releases)]).toEqual([
        'acquire',
        'cancel',
        true,
        new Set(['release']),
      ]);
      expect(waiter.leases.size).toBe(0);
      expect((await owner.status('doc:4')).locked).toBe(false);
    } finally {
      await limited.close();
    }
  });

  it('a re-acquire of a held key that races an abort keeps the lease', async () => {
    const controller = new AbortController();
    const lease = await holder.acquire('doc:5');
    const again = holder.acquire('doc:5', { signal: controller.signal });
    controller.abort(new Error('never mind'));
    await expect(again).rejects.toThrow('never mind');
    expect(lease?.held).toBe(true);
    expect(await holder.isLockHolder('doc:5')).toBe(true);
  });

  it('aborting a waitForLock sends cancel and rejects with the reason', async () => {
    await holder.acquire('doc:6');
    const { transport, sent } = recordingTransport();
    const watcher = await h.connect({ transport });
    const controller = new AbortController();
    const waiting = watcher.waitForLock('doc:6', { signal: controller.signal });
    await watcher.ping();
    controller.abort(new Error('stop waiting'));
    await expect(waiting).rejects.toThrow('stop waiting');
    expect(sent.map((frame) => frame.op)).toEqual(['wait', 'ping', 'cancel']);
  });

  it('the abort listener is removed once the acquire settles', async () => {
    const signal = new AbortController().signal;
    const add = vi.spyOn(signal, 'addEventListener');
    const remove = vi.spyOn(signal, 'removeEventListener');
    const lease = await holder.acquire('doc:7', { signal });
    expect(lease).not.toBeNull();
    expect(add).toHaveBeenCalledTimes(1);
    expect(remove.mock.calls.map((call) => call[1])).toEqual([add.mock.calls[0]?.[1]]);
  });
});
