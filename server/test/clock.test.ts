import { afterEach, describe, expect, it, vi } from 'vitest';
import { createManualClock, systemClock } from '../src/clock.js';

afterEach(() => vi.restoreAllMocks());

describe('systemClock', () => {
  it('never asks the runtime for a delay above 2^31-1 ms, however far the deadline', () => {
    let now = 1_700_000_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => now);
    const scheduled: Array<{ fn: () => void; ms: number }> = [];
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms: number) => {
      scheduled.push({ fn, ms });
      return { unref() {} } as unknown as ReturnType<typeof setTimeout>;
    }) as typeof setTimeout);
    const fired = vi.fn();

    systemClock.setTimeout(fired, 365 * 24 * 3600 * 1000);
    const first = scheduled.shift();
    expect(first?.ms).toBe(2_147_483_647);
    now += first?.ms ?? 0;
    first?.fn();

    expect(fired).not.toHaveBeenCalled();
    expect(scheduled[0]?.ms).toBe(2_147_483_647);
  });

  it('re-arms a timer that wakes before its deadline instead of firing early', () => {
    let now = 1_700_000_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => now);
    const scheduled: Array<{ fn: () => void; ms: number }> = [];
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms: number) => {
      scheduled.push({ fn, ms });
      return { unref() {} } as unknown as ReturnType<typeof setTimeout>;
    }) as typeof setTimeout);
    const fired = vi.fn();

    systemClock.setTimeout(fired, 100);
    now += 99;
    scheduled.shift()?.fn();
    expect(fired).not.toHaveBeenCalled();
    expect(scheduled[0]?.ms).toBe(1);
    now += 1;
    scheduled.shift()?.fn();
    expect(fired).toHaveBeenCalledOnce();
  });
});

describe('createManualClock', () => {
  it('runs due timers in deadline order and nothing before its deadline', () => {
    const clock = createManualClock(0);
    const order: string[] = [];
    clock.setTimeout(() => order.push('b'), 20);
    clock.setTimeout(() => order.push('a'), 10);
    clock.advance(9);
    expect(order).toEqual([]);
    clock.advance(11);
    expect(order).toEqual(['a', 'b']);
    expect(clock.pending()).toBe(0);
  });
});
