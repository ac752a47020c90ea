import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Keepalive } from '../src/keepalive.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

/**
 * Lets a test stall the process: `stall(ms)` moves the clock on by `ms`
 * without running the timers due meanwhile, which then run late.
 */
function stallable(): (ms: number) => void {
  const now = performance.now.bind(performance);
  let stalled = 0;
  vi.spyOn(performance, 'now').mockImplementation(() => now() + stalled);
  return (ms) => {
    stalled += ms;
  };
}

/** A keepalive with interval 1000 and timeout 500 that records what it did. */
function watched() {
  const did: string[] = [];
  const keepalive = new Keepalive(
    { interval: 1000, timeout: 500 },
    { ping: () => did.push('ping'), dead: () => did.push('dead') },
  );
  return { keepalive, did };
}

describe('keepalive timing', () => {
  it('pings after an interval of silence and takes the connection for dead when nothing arrives within the timeout', () => {
    const { did } = watched();
    vi.advanceTimersByTime(999);
    expect(did).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(did).toEqual(['ping']);
    vi.advanceTimersByTime(499);
    expect(did).toEqual(['ping']);
    // The timeout is up, but the verdict waits one task (a fake timer's next millisecond) for frames
    // already received to be read.
    vi.advanceTimersByTime(1);
    expect(did).toEqual(['ping']);
    vi.advanceTimersByTime(1);
    expect(did).toEqual(['ping', 'dead']);
  });

  it('counts a frame read just after the timeout came due, before the verdict, as the answer', () => {
    const { keepalive, did } = watched();
    vi.advanceTimersByTime(1500);
    expect(did).toEqual(['ping']);
    // The timer ran first (a stall made both due at once); the answer already in the socket is read next.
    keepalive.heard();
    vi.advanceTimersByTime(1);
    expect(did).toEqual(['ping']);
    vi.advanceTimersByTime(998);
    expect(did).toEqual(['ping']);
    vi.advanceTimersByTime(1);
    expect(did).toEqual(['ping', 'ping']);
  });

  it('counts every frame as a sign of life: the interval runs from the last frame, and an answered ping starts it again', () => {
    const { keepalive, did } = watched();
    vi.advanceTimersByTime(800);
    keepalive.heard();
    vi.advanceTimersByTime(999);
    expect(did).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(did).toEqual(['ping']);
    // The answer, 300 ms after the ping: the next ping is due an interval after it.
    vi.advanceTimersByTime(300);
    keepalive.heard();
    vi.advanceTimersByTime(999);
    expect(did).toEqual(['ping']);
    vi.advanceTimersByTime(1);
    expect(did).toEqual(['ping', 'ping']);
  });

  it('gives a connection one more timeout when its timer fired late behind a stalled process', () => {
    const stall = stallable();
    const { keepalive, did } = watched();
    vi.advanceTimersByTime(1000);
    expect(did).toEqual(['ping']);
    // The process stalls past the timeout: its timer runs late, and frames that arrived meanwhile are
    // not read within the one task the verdict waits (as a browser may order its tasks).
    stall(2000);
    vi.advanceTimersByTime(501);
    expect(did).toEqual(['ping']);
    keepalive.heard();
    vi.advanceTimersByTime(500);
    expect(did).toEqual(['ping']);
  });

  it('judges after the extra timeout when nothing arrived then either', () => {
    const stall = stallable();
    const { did } = watched();
    vi.advanceTimersByTime(1000);
    stall(2000);
    // The late timer at 500, its verdict one task (a fake millisecond) later: one more timeout from there.
    vi.advanceTimersByTime(501);
    expect(did).toEqual(['ping']);
    vi.advanceTimersByTime(500);
    expect(did).toEqual(['ping']);
    // That verdict too waits one task for frames already received.
    vi.advanceTimersByTime(1);
    expect(did).toEqual(['ping', 'dead']);
  });

  it('does nothing once stopped', () => {
    const { keepalive, did } = watched();
    keepalive.stop();
    vi.advanceTimersByTime(10_000);
    expect(did).toEqual([]);
  });
});
