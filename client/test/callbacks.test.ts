import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { startHarness, type Harness } from './fixtures.js';

let harness: Harness;
beforeEach(async () => {
  harness = await startHarness();
});
afterEach(async () => {
  vi.restoreAllMocks();
  await harness.close();
});

it('an onQueued callback that throws does not stop the client: the error is reported and the grant still arrives', async () => {
  const reported: unknown[] = [];
  const queueMicrotask = globalThis.queueMicrotask;
  // invokeSafely reports a callback's error from a microtask; catch it here instead of failing the run.
  vi.spyOn(globalThis, 'queueMicrotask').mockImplementation((task) => {
    queueMicrotask(() => {
      try {
        task();
      } catch (error) {
        reported.push(error);
      }
    });
  });
  const ana = await harness.connect();
  const bob = await harness.connect();
  const held = await ana.acquire('k');
  let queued!: () => void;
  const wasQueued = new Promise<void>((resolve) => (queued = resolve));
  const waiting = bob.acquire('k', {
    onQueued: () => {
      queued();
      throw new Error('a bug in user code');
    },
  });
  await wasQueued;
  await held?.release();

  const lease = await waiting;
  expect(lease?.key).toBe('k');
  expect(reported).toHaveLength(1);
  expect((reported[0] as Error).message).toBe('a bug in user code');
});
