import { describe, expect, it } from 'vitest';
import { checkHistory, Rule, type CheckOptions } from './check.js';
import type { HistoryEvent } from './history.js';
import { acquire, closed, granted, hold, lost, queued, release, released, write } from './fixtures.js';

const rules = (history: HistoryEvent[], options?: CheckOptions) =>
  [...new Set(checkHistory(history, options).violations.map((v) => v.rule))].sort();

describe('rule 1: tokens increase per key in grant order', () => {
  it('a handoff to a queued waiter with a higher token passes', () => {
    const history = [
      ...hold('a', 'k', 3, 1, 10),
      acquire('b', 2, 'b1', 'k'),
      queued('b', 2.5, 'b1', 'k'),
      granted('b', 10.5, 'b1', 'k', 4),
      release('b', 20, 'b2', 'k'),
      released('b', 21, 'b2', 'k'),
    ];
    expect(rules(history)).toEqual([]);
  });

  it('concurrent requests may be granted tokens in either order of arrival', () => {
    const history = [
      acquire('a', 0, 1, 'k', { mode: 'shared' }),
      acquire('b', 0.5, 1, 'k', { mode: 'shared' }),
      granted('b', 1, 1, 'k', 8),
      granted('a', 2, 1, 'k', 9),
      release('a', 5, 2, 'k'),
      release('b', 5, 2, 'k'),
      released('a', 6, 2, 'k'),
      released('b', 6, 2, 'k'),
    ];
    expect(rules(history)).toEqual([]);
  });

  it('the same token granted to two clients fails', () => {
    expect(rules([...hold('a', 'k', 5, 1, 10), ...hold('b', 'k', 5, 20, 30)])).toEqual([Rule.TokenOrder]);
  });

  it('a grant asked for after another grant arrived must carry a higher token', () => {
    expect(rules([...hold('a', 'k', 7, 1, 10), ...hold('b', 'k', 6, 20, 30)])).toEqual([Rule.TokenOrder]);
  });

  it('tokens of different keys are independent', () => {
    expect(rules([...hold('a', 'k', 7, 1, 10), ...hold('b', 'other', 6, 20, 30)])).toEqual([]);
  });

  it('a re-acquire by the holder answering the same token passes', () => {
    const history = [
      acquire('a', 0, 1, 'k'),
      granted('a', 1, 1, 'k', 3),
      acquire('a', 2, 2, 'k'),
      granted('a', 3, 2, 'k', 3),
      release('a', 5, 3, 'k'),
      released('a', 6, 3, 'k'),
    ];
    expect(rules(history)).toEqual([]);
  });

  it('a re-acquire by the holder answering a new token fails', () => {
    const history = [
      acquire('a', 0, 1, 'k'),
      granted('a', 1, 1, 'k', 3),
      acquire('a', 2, 2, 'k'),
      granted('a', 3, 2, 'k', 4),
      release('a', 5, 3, 'k'),
      released('a', 6, 3, 'k'),
    ];
    expect(rules(history)).toEqual([Rule.TokenOrder]);
  });
});

describe('rule 2: exclusive holds never overlap', () => {
  it('a grant arriving before the previous holder hears its release answer passes', () => {
    const history = [
      ...hold('a', 'k', 1, 1, 10),
      acquire('b', 2, 1, 'k'),
      queued('b', 2.5, 1, 'k'),
      granted('b', 10.5, 1, 'k', 2),
      release('b', 12, 2, 'k'),
      released('b', 13, 2, 'k'),
    ];
    expect(rules(history)).toEqual([]);
  });

  it('an exclusive grant while another client holds the key exclusively fails', () => {
    const history = [...hold('a', 'k', 1, 1, 10), ...hold('b', 'k', 2, 5, 12)];
    expect(rules(history)).toEqual([Rule.ExclusiveOverlap]);
  });

  it('shared holders may overlap each other', () => {
    const history = [...hold('a', 'k', 1, 1, 10, { mode: 'shared' }), ...hold('b', 'k', 2, 5, 12, { mode: 'shared' })];
    expect(rules(history)).toEqual([]);
  });

  it('a shared grant during an exclusive hold fails', () => {
    const history = [...hold('a', 'k', 1, 1, 10), ...hold('b', 'k', 2, 5, 12, { mode: 'shared' })];
    expect(rules(history)).toEqual([Rule.ExclusiveOverlap]);
  });

  it('an expired holder that hears lost late does not overlap the next holder', () => {
    const history = [
      acquire('a', 0, 1, 'k', { holdTimeout: 10 }),
      granted('a', 1, 1, 'k', 1),
      acquire('b', 2, 1, 'k'),
      queued('b', 2.5, 1, 'k'),
      granted('b', 11, 1, 'k', 2),
      lost('a', 13, 'k', 1, 'expired'),
      release('b', 20, 2, 'k'),
      released('b', 21, 2, 'k'),
    ];
    expect(rules(history, { lostOrderSlackMs: 5 })).toEqual([]);
  });

  it('a grant before the hold timeout could have run out fails', () => {
    const history = [
      acquire('a', 0, 1, 'k', { holdTimeout: 10 }),
      granted('a', 1, 1, 'k', 1),
      acquire('b', 2, 1, 'k'),
      queued('b', 2.5, 1, 'k'),
      granted('b', 6, 1, 'k', 2),
      lost('a', 13, 'k', 1, 'expired'),
      release('b', 20, 2, 'k'),
      released('b', 21, 2, 'k'),
    ];
    expect(rules(history, { lostOrderSlackMs: Infinity })).toEqual([Rule.ExclusiveOverlap]);
  });

  it("a grant after the holder's connection closed passes", () => {
    const history = [
      acquire('a', 0, 1, 'k'),
      granted('a', 1, 1, 'k', 1),
      acquire('b', 2, 1, 'k'),
      queued('b', 2.5, 1, 'k'),
      closed('a', 10, 'clean', 100),
      granted('b', 10.05, 1, 'k', 2),
    ];
    expect(rules(history)).toEqual([]);
  });

  it("a grant before the holder's connection closed fails", () => {
    const history = [
      acquire('a', 0, 1, 'k'),
      granted('a', 1, 1, 'k', 1),
      acquire('b', 2, 1, 'k'),
      granted('b', 5, 1, 'k', 2),
      closed('a', 10, 'clean', 100),
    ];
    expect(rules(history)).toEqual([Rule.ExclusiveOverlap]);
  });

  it('an acquire whose answer never came is not counted as a holder', () => {
    const history = [acquire('a', 0, 1, 'k'), closed('a', 10, 'clean', 100), ...hold('b', 'k', 5, 2, 5)];
    expect(rules(history)).toEqual([]);
  });
});

describe('rule 3: the fenced resource refuses exactly the stale writes', () => {
  const expiredHolder = (lateWriteAccepted: boolean) => [
    acquire('a', 0, 1, 'k', { holdTimeout: 10 }),
    granted('a', 1, 1, 'k', 1),
    write('a', 2, 'k', 1, true),
    acquire('b', 3, 1, 'k'),
    queued('b', 3.5, 1, 'k'),
    lost('a', 10.5, 'k', 1, 'expired'),
    granted('b', 11, 1, 'k', 2),
    write('b', 12, 'k', 2, true),
    write('a', 14, 'k', 1, lateWriteAccepted),
    release('b', 20, 2, 'k'),
    released('b', 21, 2, 'k'),
  ];

  it("a paused holder's write after its successor's first write is refused and passes", () => {
    expect(rules(expiredHolder(false))).toEqual([]);
  });

  it("a paused holder's write accepted after its successor's first write fails", () => {
    expect(rules(expiredHolder(true))).toEqual([Rule.Fencing]);
  });

  it('refusing a write with the highest token so far fails', () => {
    expect(rules([...hold('a', 'k', 1, 1, 10), write('a', 2, 'k', 1, false)])).toEqual([Rule.Fencing]);
  });

  it('a write with a token its writer was never granted fails', () => {
    expect(rules([...hold('a', 'k', 1, 1, 10), write('a', 2, 'k', 9, true)])).toEqual([Rule.Fencing]);
  });

  it('a refused write from the current exclusive holder exposes tokens issued out of grant order', () => {
    const history = [
      acquire('a', 0, 1, 'k'),
      acquire('b', 0.5, 1, 'k'),
      granted('b', 1, 1, 'k', 5),
      write('b', 2, 'k', 5, true),
      release('b', 3, 2, 'k'),
      released('b', 4, 2, 'k'),
      granted('a', 4.5, 1, 'k', 4),
      write('a', 5, 'k', 4, false),
      release('a', 10, 2, 'k'),
      released('a', 11, 2, 'k'),
    ];
    expect(rules(history)).toEqual([Rule.Fencing]);
  });
});
