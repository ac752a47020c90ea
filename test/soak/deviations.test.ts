import { describe, expect, it } from 'vitest';
import { Rule, checkHistory } from '../checker/check.js';
import { acquire, granted, notGranted } from '../checker/fixtures.js';
import type { History } from '../checker/history.js';
import { noDeviations, setDeviationsApart } from './deviations.js';

/** a holds k; b waits at most 100 ms and is answered "not granted" at `at`. */
const timedOut = (at: number): History => [
  acquire('a', 0, 1, 'k'),
  granted('a', 1, 1, 'k', 10),
  acquire('b', 2, 1, 'k', { acquireTimeout: 100 }),
  notGranted('b', at, 1, 'k'),
];

describe('soak deviations', () => {
  it('sets apart an acquire timeout answered under 2 ms early', () => {
    const deviations = noDeviations();
    const history = timedOut(101.5);
    expect(checkHistory(history).violations.map((v) => v.rule)).toEqual([Rule.GrantValidity]);
    expect(setDeviationsApart(checkHistory(history).violations, deviations)).toEqual([]);
    expect(deviations.earlyTimers).toEqual({ count: 1, maxMs: 0.5 });
  });

  it('keeps an acquire timeout answered 2 ms early or more as a violation', () => {
    const deviations = noDeviations();
    const left = setDeviationsApart(checkHistory(timedOut(99.9)).violations, deviations);
    expect(left.map((v) => v.rule)).toEqual([Rule.GrantValidity]);
    expect(deviations.earlyTimers.count).toBe(0);
  });
});
