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
    let now = 5_000;
    vi.spyOn(performance, 'now').mockImplementation(() => now);
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

  it('times its timers on the monotonic clock, so a step of the wall clock neither fires them early nor holds them back', () => {
    let mono = 5_000;
    let wall = 1_700_000_000_000;
    vi.spyOn(performance, 'now').mockImplementation(() => mono);
    vi.spyOn(Date, 'now').mockImplementation(() => wall);
    const scheduled: Array<{ fn: () => void; ms: number }> = [];
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms: number) => {
      scheduled.push({ fn, ms });
      return { unref() {} } as unknown as ReturnType<typeof setTimeout>;
    }) as typeof setTimeout);
    const early = vi.fn();
    const late = vi.fn();

    systemClock.setTimeout(early, 100);
    wall += 3_600_000;
    mono += 99;
    scheduled.shift()?.fn();
    expect(early).not.toHaveBeenCalled();

    systemClock.setTimeout(late, 300);
    wall -= 7_200_000;
    mono += 1;
    scheduled.shift()?.fn();
    expect(early).toHaveBeenCalledOnce();
    mono += 300;
    scheduled.at(-1)?.fn();
    expect(late).toHaveBeenCalledOnce();
    expect(systemClock.now()).toBe(wall);
  });
});

describe('createManualClock', () => {
  it('steps its wall clock alone with stepWall: monotonic time stays and no timer runs', () => {
    const clock = createManualClock(1_000);
    const fired = vi.fn();
    clock.setTimeout(fired, 50);
    clock.stepWall(3_600_000);
    expect({ now: clock.now(), monotonic: clock.monotonic(), fired: fired.mock.calls.length }).toEqual({ now: 3_601_000, monotonic: 0, fired: 0 });
    clock.stepWall(-7_200_000);
    clock.advance(50);
    expect({ now: clock.now(), monotonic: clock.monotonic(), fired: fired.mock.calls.length }).toEqual({ now: -3_598_950, monotonic: 50, fired: 1 });
  });

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
