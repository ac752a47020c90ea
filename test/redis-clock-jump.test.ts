import { createClient } from 'redis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createManualClock } from '../server/src/clock.js';
import { listenerLog, useRedisStores } from '../server/test/redis-harness.js';
import { acquireInput } from '../server/test/server-harness.js';

// A machine's wall clock may be stepped at any moment (an NTP correction, a
// VM resumed, an operator's `date -s`). The node's liveness runs on real
// time, so these tests step this process's wall clock (`Date.now()`) while
// Node's timers and `performance.now()` run on, as on a real machine; hold
// timeouts run on the store's clock, so those tests step a manual clock's
// wall clock alone (`stepWall`).

const HOUR = 3_600_000;

/** Steps this process's wall clock (`Date.now()`) by `ms`; Node's timers keep running on the monotonic clock. */
function stepWallClock(ms: number): void {
  const real = Date.now.bind(Date);
  vi.spyOn(Date, 'now').mockImplementation(() => real() + ms);
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('a Redis node whose wall clock steps', () => {
  const stores = useRedisStores('jump');

  for (const [step, label] of [
    [0, 'as it runs on'],
    [-HOUR, 'after its wall clock stepped back an hour'],
  ] as const) {
    it(`a node cut off from Redis tells its holder lost (revoked) before another node grants the key, ${label}`, async () => {
      const proxy = await stores.proxy();
      const namespace = stores.namespace();
      const nodeTtl = 1000;
      const aLog = listenerLog();
      const a = await stores.startStore({ url: proxy.url, namespace, nodeTtl, commandTimeout: 300, tolerateCloseFailure: true }, aLog.listener);
      const bLog = listenerLog();
      const b = await stores.startStore({ url: stores.redis.url, namespace, nodeTtl }, bLog.listener);
      const held = await a.acquire('h', acquireInput(1, 'k'));
      if (held.status !== 'granted') throw new Error('h was not granted');
      expect(await b.acquire('w', acquireInput(2, 'k'))).toMatchObject({ status: 'queued' });
      // a is cut off from Redis (nothing it sends is answered in time), and its clock is stepped.
      proxy.delayReplies(60_000);
      if (step !== 0) stepWallClock(step);
      // a's liveness key expires in Redis 0.9 x node TTL after its last renew ran; b cleans a up and grants w.
      await bLog.next(/^granted w /, 5000);
      // By then h was told: a stops vouching once its last renew is 0.9 x node TTL old, on real time.
      expect(aLog.lines.filter((line) => line.startsWith('lost h k'))).toEqual([`lost h k ${held.token} revoked`]);
    });
  }

  for (const [step, label] of [
    [0, 'as it runs on'],
    [HOUR, 'after its wall clock stepped forward an hour'],
  ] as const) {
    it(`after Redis lost its state a node grants nothing for its holdoff, so the old holder on another node is told first, ${label}`, async () => {
      const namespace = stores.namespace();
      const nodeTtl = 30_000;
      const aLog = listenerLog();
      const a = await stores.startStore({ url: stores.redis.url, namespace, nodeTtl }, aLog.listener);
      const bLog = listenerLog();
      const b = await stores.startStore({ url: stores.redis.url, namespace, nodeTtl }, bLog.listener);
      const held = await a.acquire('h', acquireInput(1, 'k'));
      if (held.status !== 'granted') throw new Error('h was not granted');
      const admin = createClient({ url: stores.redis.url });
      await admin.connect();
      await admin.sendCommand(['FLUSHALL']);
      admin.destroy();
      // b finds out first (its acquire meets its liveness key gone) and holds off for one node TTL (30 s).
      await expect(b.acquire('w', acquireInput(1, 'k', { acquireTimeout: 0 }))).rejects.toMatchObject({ code: 'store_unavailable' });
      await expect(b.acquire('w', acquireInput(2, 'k', { acquireTimeout: 0 }))).rejects.toMatchObject({ code: 'store_unavailable' });
      if (step !== 0) stepWallClock(step);
      let granted = false;
      // Tries for 2 s of real (monotonic) time: far less than the 30 s holdoff.
      const until = performance.now() + 2000;
      for (let ticket = 3; performance.now() < until && !granted; ticket++) {
        const outcome = await b.acquire('w', acquireInput(ticket, 'k', { acquireTimeout: 0 })).catch(() => null);
        granted = outcome?.status === 'granted';
        if (!granted) await new Promise((resolve) => setImmediate(resolve));
      }
      // h (on a, which has not looked yet) has not been told, so b must not have granted k.
      expect({ granted, aHeard: aLog.lines }).toEqual({ granted: false, aHeard: [] });
    });
  }
});
