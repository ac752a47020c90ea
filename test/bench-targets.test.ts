import { describe, expect, it } from 'vitest';
import { sizedTarget } from '../bench/lib/targets.mjs';

// A target stated at a size is judged only by a run that measured at it.

describe('sizedTarget', () => {
  const full = { idleConnections: 10_000, growthKeys: [1_000, 1_000_000] };

  it('judges the target when the run measured at the full run size', () => {
    expect(sizedTarget({ ...full }, full, ['idleConnections'], '<= 1.5x bare ws', '10,000 connections', false)).toEqual({ target: '<= 1.5x bare ws', met: false });
    expect(sizedTarget({ ...full, growthKeys: [1_000, 1_000_000] }, full, ['growthKeys'], '<= 1.3x', '1,000,000 against 1,000 keys', true)).toEqual({ target: '<= 1.3x', met: true });
  });

  it('states the target and its size, without judging it, when the run measured at another size', () => {
    expect(sizedTarget({ idleConnections: 2_000 }, full, ['idleConnections'], '<= 1.5x bare ws', '10,000 connections', false)).toEqual({
      target: "<= 1.5x bare ws at 10,000 connections (not judged at this run's size)",
      met: null,
    });
    // Any one of the sizes differing is enough, an array's elements included.
    expect(sizedTarget({ ...full, growthKeys: [1_000, 50_000] }, full, ['idleConnections', 'growthKeys'], '<= 1.3x', '1,000,000 against 1,000 keys', true).met).toBeNull();
  });
});
