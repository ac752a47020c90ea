import { createClient } from 'redis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createManualClock, type ManualClock } from '../server/src/clock.js';
import type { LockStore } from '../server/src/store.js';
import { listenerLog, useRedisStores, type ListenerLog } from '../server/test/redis-harness.js';
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

/** Tickets of the waits `held` makes: a store's tickets are unique across its sessions. */
let waits = 1000;

/**
 * Whether `store` still holds `key` for anyone, as a step of its node sent
 * now sees it: a wait of a fresh session, 'pending' while a hold stands.
 * Steps of one key leave a node in order, so an expiry its clock already
 * set off (a timer that ran in `advance`) reaches Redis before this.
 */
async function held(store: LockStore, key: string): Promise<boolean> {
  const ticket = ++waits;
  return (await store.wait(`o${ticket}`, { ticket, key, timeout: null })) === 'pending';
}

/** Moves `clock` on by `ms`, then whether `key` is still held (see `held`), and the lost lines `log` has by then. */
async function after(clock: ManualClock, ms: number, store: LockStore, key: string, log: ListenerLog) {
  clock.advance(ms);
  const stands = await held(store, key);
  return { held: stands, lost: log.lines.filter((line) => line.startsWith('lost ')).map((line) => line.replace(/ \d+ /, ' <t> ')) };
}

describe('a Redis node whose wall clock steps', () => {
  const stores = useRedisStores('jump');

  for (const [step, label] of [
    [0, 'as it runs on'],
    [-HOUR, 'after its wall clock stepped back an hour'],
  ] as const) {
    it(`a node cut off from Redis tells its holder lost (revoked) before another node grants the key, ${label}`, async () => {
      const proxy = await stores.proxy();
      const namespace = stores.namespace();
      // a's TTL is short so the test is quick; b's is longer, so that a stall of this machine cannot
      // cut off b, the node that stays reachable.
      const aLog = listenerLog();
      const a = await stores.startStore({ url: proxy.url, namespace, nodeTtl: 1000, commandTimeout: 300, tolerateCloseFailure: true }, aLog.listener);
      const bLog = listenerLog();
      const b = await stores.startStore({ url: stores.redis.url, namespace, nodeTtl: 3000 }, bLog.listener);
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

  it('a hold times out after its holdTimeout on the monotonic clock when the wall clock steps back an hour, not an hour later', async () => {
    const clock = createManualClock();
    const log = listenerLog();
    const store = await stores.startStore({ url: stores.redis.url, namespace: stores.namespace(), clock }, log.listener);
    const granted = await store.acquire('h', acquireInput(1, 'k', { holdTimeout: 300 }));
    if (granted.status !== 'granted') throw new Error('h was not granted');
    clock.stepWall(-HOUR);
    expect(await after(clock, 299, store, 'k', log)).toEqual({ held: true, lost: [] });
    clock.advance(1);
    await log.next(/^lost h k \d+ expired$/, 3000);
    // The expiresAt reported stays a point in wall time: the grant's, by the clock as it read then.
    expect(granted.expiresAt).toBe(1_700_000_000_300);
  });

  it('a hold is not timed out early when the wall clock steps forward an hour', async () => {
    const clock = createManualClock();
    const log = listenerLog();
    const store = await stores.startStore({ url: stores.redis.url, namespace: stores.namespace(), clock }, log.listener);
    expect(await store.acquire('h', acquireInput(1, 'k', { holdTimeout: 300 }))).toMatchObject({ status: 'granted' });
    clock.stepWall(HOUR);
    expect(await after(clock, 299, store, 'k', log)).toEqual({ held: true, lost: [] });
    clock.advance(1);
    await log.next(/^lost h k \d+ expired$/, 3000);
  });

  it('an extend after the wall clock stepped back an hour keeps the hold for the extend\'s holdTimeout, then it times out', async () => {
    const clock = createManualClock();
    const log = listenerLog();
    const store = await stores.startStore({ url: stores.redis.url, namespace: stores.namespace(), clock }, log.listener);
    expect(await store.acquire('h', acquireInput(1, 'k', { holdTimeout: 300 }))).toMatchObject({ status: 'granted' });
    clock.advance(200);
    clock.stepWall(-HOUR);
    expect(await store.extend('h', 'k', 1000)).toBe(1_700_000_000_000 + 200 - HOUR + 1000);
    // The timer armed for the first expiry (at 300) no longer ends it.
    expect(await after(clock, 999, store, 'k', log)).toEqual({ held: true, lost: [] });
    clock.advance(1);
    await log.next(/^lost h k \d+ expired$/, 3000);
  });

  // h is granted at 0 with a 1000 ms holdTimeout; an extend by 1000 ms at 200 is run by Redis, its answer lost.
  for (const [step, label] of [
    [0, 'as the wall clock runs on'],
    [-200, 'also when the wall clock stepped back to give it the very expiresAt of the grant'],
  ] as const) {
    it(`an extend whose answer never came keeps the hold its holdTimeout from the extend, past the timer of the grant, ${label}`, async () => {
      const proxy = await stores.proxy();
      const clock = createManualClock();
      const log = listenerLog();
      const store = await stores.startStore(
        { url: proxy.url, namespace: stores.namespace(), clock, nodeTtl: 30_000, commandTimeout: 300, tolerateCloseFailure: true },
        log.listener,
      );
      expect(await store.acquire('h', acquireInput(1, 'k', { holdTimeout: 1000 }))).toMatchObject({ status: 'granted' });
      clock.advance(200);
      clock.stepWall(step);
      // Redis runs the extend, but its answer comes after the command timeout.
      proxy.delayReplies(800);
      await expect(store.extend('h', 'k', 1000)).rejects.toMatchObject({ code: 'store_unavailable' });
      proxy.delayReplies(0);
      // Replies keep their order: the late one holds up what follows it, and a connection that answers
      // nothing for two command timeouts is replaced (calls fail at once until the new one answers, and
      // the node serves again once its liveness check passed).
      for (let tries = 0; (await store.status('k', null).catch(() => null)) === null || !store.readiness?.().ready; tries++) {
        if (tries === 100) throw new Error('Redis did not answer again');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // The grant's timer (at 1000) finds the hold extended, and times it from the new expiry.
      expect(await after(clock, 800, store, 'k', log)).toEqual({ held: true, lost: [] });
      expect(await after(clock, 199, store, 'k', log)).toEqual({ held: true, lost: [] });
      clock.advance(2);
      await log.next(/^lost h k \d+ expired$/, 3000);
    });
  }

  it('acquire and wait timeouts run out on time when the wall clock steps back an hour', async () => {
    const clock = createManualClock();
    const log = listenerLog();
    const store = await stores.startStore({ url: stores.redis.url, namespace: stores.namespace(), clock }, log.listener);
    expect(await store.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    expect(await store.acquire('w', acquireInput(2, 'k', { acquireTimeout: 300 }))).toMatchObject({ status: 'queued' });
    expect(await store.wait('o', { ticket: 3, key: 'k', timeout: 300 })).toBe('pending');
    clock.stepWall(-HOUR);
    clock.advance(300);
    await log.next(/^timedOut w #2$/, 3000);
    await log.next(/^waitDone o #3 false$/, 3000);
  });

  // The wall clock steps after the step was sent (its expiries computed from the wall clock it sent) and
  // before its reply is read here: on one node a hold its own step granted to another session is timed
  // from that step on the monotonic clock, whatever the wall clock did meanwhile.
  for (const [script, cause] of [
    ['release', "another session's release"],
    ['expire', "the expiry of another session's hold"],
  ] as const) {
    for (const [step, label] of [
      [HOUR, 'forward'],
      [-HOUR, 'back'],
    ] as const) {
      it(`on one node, a waiter granted by ${cause} holds for its holdTimeout from the grant when the wall clock steps ${label} an hour while that step is on its way`, async () => {
        const clock = createManualClock();
        const log = listenerLog();
        let stepOn: string | null = null;
        const observeScript = (name: string) => {
          if (name !== stepOn) return;
          stepOn = null;
          clock.stepWall(step);
        };
        const store = await stores.startStore({ url: stores.redis.url, namespace: stores.namespace(), clock, observeScript }, log.listener);
        expect(await store.acquire('h', acquireInput(1, 'k', { holdTimeout: 5000 }))).toMatchObject({ status: 'granted' });
        // w waits longer than its own holdTimeout before it is granted.
        expect(await store.acquire('w', acquireInput(2, 'k', { holdTimeout: 1000 }))).toMatchObject({ status: 'queued' });
        stepOn = script;
        if (script === 'release') {
          clock.advance(4000);
          await store.release('h', 'k');
        } else {
          clock.advance(5000);
          await log.next(/^lost h k \d+ expired$/, 3000);
        }
        await log.next(/^granted w /, 3000);
        expect(stepOn).toBeNull();
        expect(await after(clock, 999, store, 'k', log)).toEqual({ held: true, lost: script === 'release' ? [] : ['lost h k <t> expired'] });
        expect(await after(clock, 1, store, 'k', log)).toMatchObject({ held: false });
        await log.next(/^lost w k \d+ expired$/, 3000);
      });
    }
  }

  it('a hold granted through another node\'s step is not timed out sooner than its holdTimeout after the acquire, when the holder node\'s wall clock stepped forward an hour', async () => {
    const namespace = stores.namespace();
    const aClock = createManualClock();
    const bClock = createManualClock();
    const aLog = listenerLog();
    const a = await stores.startStore({ url: stores.redis.url, namespace, clock: aClock }, aLog.listener);
    const bLog = listenerLog();
    const b = await stores.startStore({ url: stores.redis.url, namespace, clock: bClock }, bLog.listener);
    expect(await a.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    expect(await b.acquire('w', acquireInput(1, 'k', { holdTimeout: 1000 }))).toMatchObject({ status: 'queued' });
    bClock.stepWall(HOUR);
    await a.release('h', 'k');
    await bLog.next(/^granted w /);
    expect(await after(bClock, 999, b, 'k', bLog)).toEqual({ held: true, lost: [] });
    bClock.advance(1);
    await bLog.next(/^lost w k \d+ expired$/, 3000);
  });

  // b's acquire is made at 0 with a 1000 ms holdTimeout and granted at once after it; b learns of the grant
  // at 500. It was granted after 0 and before 500: the hold runs out between 1000 and 1500, by b's wall
  // clock if that is in between, else at the nearer end.
  for (const [step, label, endsAt] of [
    [HOUR, 'not timed out at once when its wall clock stepped forward an hour', 1000],
    [-HOUR, 'not kept an hour when its wall clock stepped back an hour', 1500],
  ] as const) {
    it(`a hold the node learns of from Redis after missing its grant is ${label}`, async () => {
      const namespace = stores.namespace();
      const proxy = await stores.proxy();
      const aClock = createManualClock();
      const bClock = createManualClock();
      const a = await stores.startStore({ url: stores.redis.url, namespace, clock: aClock }, listenerLog().listener);
      const bLog = listenerLog();
      const b = await stores.startStore({ url: proxy.url, namespace, clock: bClock, tolerateCloseFailure: true }, bLog.listener);
      expect(await a.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
      expect(await b.acquire('w', acquireInput(1, 'k', { acquireTimeout: 500, holdTimeout: 1000 }))).toMatchObject({ status: 'queued' });
      // b hears nothing over pub/sub from now on: the grant's note to it is lost.
      proxy.silence();
      await a.release('h', 'k');
      bClock.stepWall(step);
      // The acquire timeout finds it no longer queued and asks Redis: granted.
      bClock.advance(500);
      await bLog.next(/^granted w /);
      expect(await after(bClock, endsAt - 501, b, 'k', bLog)).toEqual({ held: true, lost: [] });
      expect(await after(bClock, 1, b, 'k', bLog)).toMatchObject({ held: false });
      // Told with the expiry's reason, or `revoked` when its note waits behind the grant b never heard.
      await bLog.next(/^lost w k \d+ (expired|revoked)$/, 3000);
    });
  }

  it('a hold granted through a node 5 s ahead ends when the holder node\'s clock reaches the expiresAt it was told', async () => {
    const namespace = stores.namespace();
    const start = 1_800_000_000_000;
    const aClock = createManualClock(start + 5000);
    const bClock = createManualClock(start);
    const a = await stores.startStore({ url: stores.redis.url, namespace, clock: aClock }, listenerLog().listener);
    const bLog = listenerLog();
    const b = await stores.startStore({ url: stores.redis.url, namespace, clock: bClock }, bLog.listener);
    const held = await a.acquire('h', acquireInput(1, 'k'));
    if (held.status !== 'granted') throw new Error('h was not granted');
    expect(await b.acquire('w', acquireInput(1, 'k', { holdTimeout: 1000 }))).toMatchObject({ status: 'queued' });
    await a.release('h', 'k');
    await bLog.next(/^granted w /);
    const status = await b.status('k', null);
    const expiresAt = status.holders[0]?.expiresAt ?? 0;
    bLog.push(`expiresAt-bNow ${expiresAt - bClock.now()}`);
    bClock.set(expiresAt - 1);
    const extended = await b.extend('w', 'k', 1000).catch((e: unknown) => String(e));
    bLog.push(`extend ${JSON.stringify(extended)} bNow ${bClock.now()}`);
    bClock.set(bClock.now() + 1001);
    await bLog.next(/^lost w k .* expired$/);
    bLog.push(`lost at bNow ${bClock.now()}`);
    // Held within the documented tolerance (holdTimeout give or take the skew), lost when b's clock reaches expiresAt.
    expect(bLog.lines.slice(1)).toEqual([
      'expiresAt-bNow 6000',
      `extend ${start + 6999} bNow ${start + 5999}`,
      expect.stringMatching(/^lost w k \d+ expired$/),
      `lost at bNow ${start + 7000}`,
    ]);
  });
});
