import { describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { keyNames } from '../src/redis/key-codec.js';
import { LocalTable } from '../src/redis/local-table.js';
import { Reconciler } from '../src/redis/reconciler.js';
import type { StepRunner } from '../src/redis/step-runner.js';
import type { StoreContext } from '../src/redis/store-context.js';
import type { LostLock, SessionId } from '../src/store.js';

/**
 * A reconciler over a fake link whose `probe` says every hold is gone, with
 * one session holding `doc:1`, while a step of this node on the key is in
 * flight until `stepDone()`.
 */
function reconcilerWithGoneHold() {
  const lost: Array<{ session: SessionId; notice: LostLock }> = [];
  let probes = 0;
  const ctx = {
    link: {
      evalScript: async () => {
        probes++;
        return JSON.stringify({ st: 'gone' });
      },
    },
    liveness: { id: 'n1', serving: true },
    names: keyNames('lw'),
    namespace: 'lw',
    listener: { lost: (session: SessionId, notice: LostLock) => lost.push({ session, notice }) },
    closing: null,
  } as unknown as StoreContext;
  const table = new LocalTable(createManualClock(0), () => {});
  table.addHold(table.session('s1'), 's1', { key: 'doc:1', token: 7, expiresAt: null }, null);
  let busy = true;
  const steps = { busy: () => busy } as unknown as StepRunner;
  const reconciler = new Reconciler(ctx, table, steps);
  return { reconciler, lost, probes: () => probes, stepDone: () => (busy = false) };
}

describe('the Redis reconciler', () => {
  it('keeps settled() waiting through the pause before a run it must try again, until that run reported the loss', async () => {
    const { reconciler, lost, probes, stepDone } = reconcilerWithGoneHold();
    // The first run finds the hold gone but a step of the key in flight: it leaves it for the next run.
    await reconciler.reconcile();
    expect(lost).toEqual([]);
    stepDone();
    await reconciler.settled();
    expect(probes()).toBe(2);
    expect(lost).toEqual([{ session: 's1', notice: { key: 'doc:1', token: 7, reason: 'revoked' } }]);
  });
});
