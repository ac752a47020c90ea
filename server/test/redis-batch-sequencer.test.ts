import { describe, expect, it } from 'vitest';
import { BatchSequencer } from '../src/redis/batch-sequencer.js';
import type { Batch } from '../src/redis/records.js';
import { within } from './server-harness.js';

const batch = (pv: number, v: number, extra: Partial<Batch> = {}): Batch => ({ key: 'k', encoded: 'k006b', pv, v, items: [], ...extra });

function sequencer(gapWait = 10_000) {
  const delivered: Array<{ v: number; withEvents: boolean; origin?: string }> = [];
  let wake: () => void = () => undefined;
  const seq = new BatchSequencer({
    node: () => 'me',
    gapWait,
    deliver: (b, withEvents) => {
      delivered.push({ v: b.v, withEvents, ...(b.origin ? { origin: b.origin } : {}) });
      wake();
    },
  });
  /** Resolves once `count` batches were delivered; rejects after the harness's bounded wait. */
  const deliveries = (count: number) =>
    within(
      (async () => {
        while (delivered.length < count) await new Promise<void>((resolve) => (wake = resolve));
      })(),
      `${count} deliveries`,
    );
  return { seq, delivered, deliveries };
}

describe('the batch sequencer', () => {
  it('delivers a batch that overtook its predecessor only after it, and each step once', () => {
    const { seq, delivered } = sequencer();
    seq.accept(batch(0, 10));
    seq.accept(batch(20, 30));
    expect(delivered).toEqual([{ v: 10, withEvents: true }]);
    seq.accept(batch(10, 20));
    seq.accept(batch(10, 20, { origin: 'other', call: '1' }));
    expect(delivered).toEqual([
      { v: 10, withEvents: true },
      { v: 20, withEvents: true },
      { v: 30, withEvents: true },
      { v: 20, withEvents: false, origin: 'other' },
    ]);
    seq.close();
  });

  it('delivers the reply of its own call in place of the broadcast of that step, which it never reads', () => {
    const { seq, delivered } = sequencer();
    seq.accept(batch(0, 5));
    seq.beginCall('7');
    let read = 0;
    seq.acceptOwn('7', () => {
      read++;
      return batch(5, 6, { origin: 'me', call: '7' });
    });
    expect(delivered).toHaveLength(1);
    seq.endCall('7', batch(5, 6));
    seq.acceptOwn('7', () => {
      read++;
      return batch(5, 6, { origin: 'me', call: '7' });
    });
    expect(delivered).toEqual([
      { v: 5, withEvents: true },
      { v: 6, withEvents: true },
    ]);
    expect(read).toBe(0);
    seq.close();
  });

  it('delivers the broadcast of its own failed call, whether it came before or after the failure', () => {
    const { seq, delivered } = sequencer();
    seq.accept(batch(0, 5));
    seq.beginCall('8');
    seq.accept(batch(5, 6, { origin: 'me', call: '8' }));
    seq.endCall('8', null);
    seq.beginCall('9');
    seq.endCall('9', null);
    seq.accept(batch(6, 7, { origin: 'me', call: '9' }));
    expect(delivered).toEqual([
      { v: 5, withEvents: true },
      { v: 6, withEvents: true, origin: 'me' },
      { v: 7, withEvents: true, origin: 'me' },
    ]);
    seq.close();
  });

  it('delivers what waited for a predecessor that never comes after the gap wait, in version order', async () => {
    const { seq, delivered, deliveries } = sequencer(20);
    seq.accept(batch(0, 1));
    seq.accept(batch(3, 4));
    seq.accept(batch(2, 3));
    expect(delivered.map((d) => d.v)).toEqual([1]);
    await deliveries(3);
    expect(delivered.map((d) => d.v)).toEqual([1, 3, 4]);
    seq.close();
  });

  it('waits for the predecessor of the first batch it sees of a key, unless a snapshot told it the version', () => {
    const { seq, delivered } = sequencer();
    seq.accept(batch(7, 8));
    expect(delivered).toEqual([]);
    seq.seed('k006c', 7);
    seq.accept(batch(7, 8, { encoded: 'k006c' }));
    expect(delivered).toEqual([{ v: 8, withEvents: true }]);
    seq.close();
  });

  it('tells a caller once every step up to a version was delivered, and false when a predecessor stays missing', async () => {
    const { seq } = sequencer(20);
    seq.accept(batch(0, 10));
    expect(seq.reach('k006b', 10, true)).toBe(true);
    const reached = seq.reach('k006b', 20, true);
    expect(reached).toBeInstanceOf(Promise);
    seq.accept(batch(10, 20));
    expect(await reached).toBe(true);
    expect(await seq.reach('k006b', 30, true)).toBe(false);
    seq.close();
  });

  it('starts a key it has not seen at the version of its own reply and delivers what waited after it at once', () => {
    const { seq, delivered } = sequencer();
    seq.accept(batch(20, 30));
    expect(delivered).toEqual([]);
    expect(seq.reach('k006b', 20, false)).toBe(true);
    expect(delivered).toEqual([]);
    expect(seq.reach('k006b', 20, true)).toBe(true);
    expect(delivered).toEqual([{ v: 30, withEvents: true }]);
    seq.close();
  });

  it('resolves heard() only once the batches held for a missing predecessor are delivered', async () => {
    const { seq, delivered } = sequencer();
    seq.accept(batch(0, 10));
    seq.accept(batch(20, 30));
    let heard = false;
    const waiting = seq.heard().then(() => (heard = true));
    // Every microtask has run by the next macrotask.
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(heard).toBe(false);
    seq.accept(batch(10, 20));
    await waiting;
    expect(delivered.map((d) => d.v)).toEqual([10, 20, 30]);
    seq.close();
  });

  it('resolves heard(matters) without waiting for the held batches of keys it does not accept', async () => {
    const { seq, delivered } = sequencer();
    const other = { key: 'o', encoded: 'k006f' };
    seq.accept(batch(0, 10));
    seq.accept(batch(0, 10, other));
    seq.accept(batch(20, 30, other));
    await expect(seq.heard((key) => key === 'k')).resolves.toBeUndefined();
    let heard = false;
    const waiting = seq.heard((key) => key === 'o').then(() => (heard = true));
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(heard).toBe(false);
    seq.accept(batch(10, 20, other));
    await waiting;
    expect(delivered.map((d) => d.v)).toEqual([10, 10, 20, 30]);
    seq.close();
  });

  it('resolves heard() at once when no batch is held', async () => {
    const { seq } = sequencer();
    seq.accept(batch(0, 10));
    await expect(seq.heard()).resolves.toBeUndefined();
    seq.close();
  });
});
