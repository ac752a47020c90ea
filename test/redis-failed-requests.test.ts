import { createClient } from 'redis';
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../server/src/clock.js';
import { silentLogger } from '../server/src/logger.js';
import { encodeKey, keyNames } from '../server/src/redis/key-codec.js';
import type { LockEvent, LockStore } from '../server/src/store.js';
import { listenerLog, useRedisStores, type ListenerLog, type PubSubProxy } from '../server/test/redis-harness.js';
import { acquireInput } from '../server/test/server-harness.js';

// Requests answered store_unavailable that Redis ran all the same (only their
// reply came too late): a retry by the same session, and a wait left behind.
// Node `a` reaches Redis through a proxy that delays replies past its command
// timeout of 300 ms; node `b` reaches it directly and watches every key.

/** The events of a watch over every key, as `event key session token`, that a test can await. */
async function watchAll(store: LockStore): Promise<ListenerLog> {
  const events = listenerLog();
  await store.watch('', 100, null, (e: LockEvent) => events.push(`${e.event} ${e.key} ${e.session} ${e.token ?? '-'}`));
  return events;
}

/** How a call ended: `answered <status>` or `failed <code>`. */
function outcomeOf(call: Promise<{ status: string }>): Promise<string> {
  return call.then(
    (o) => `answered ${o.status}`,
    (e: { code?: string; message?: string }) => `failed ${e.code}`,
  );
}

describe('a request answered store_unavailable that Redis ran all the same', () => {
  const stores = useRedisStores('retry');

  async function nodes(): Promise<{
    proxy: PubSubProxy;
    namespace: string;
    a: LockStore;
    logA: ListenerLog;
    debugA: ListenerLog;
    b: LockStore;
    logB: ListenerLog;
  }> {
    const clock = createManualClock();
    const proxy = await stores.proxy();
    const namespace = stores.namespace();
    const logA = listenerLog();
    const debugA = listenerLog();
    const logger = { ...silentLogger, debug: (_o: object, msg: string) => debugA.push(msg) };
    // Heartbeats every 10 s: no reconciliation of their own starts within a test.
    const a = await stores.startStore(
      { url: proxy.url, namespace, clock, logger, nodeTtl: 30_000, commandTimeout: 300, tolerateCloseFailure: true },
      logA.listener,
    );
    const logB = listenerLog();
    const b = await stores.startStore({ url: stores.redis.url, namespace, clock }, logB.listener);
    return { proxy, namespace, a, logA, debugA, b, logB };
  }

  it('queues a retry of an acquire whose failed call Redis queued, instead of refusing it as already queued', async () => {
    const { proxy, a, logA, b } = await nodes();
    expect(await b.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    const events = await watchAll(b);
    proxy.delayReplies(400);
    expect(await outcomeOf(a.acquire('a', acquireInput(2, 'k')))).toBe('failed store_unavailable');
    proxy.delayReplies(0);
    // The retry reaches the store while the failed request still waits in Redis' queue.
    expect(await outcomeOf(a.acquire('a', acquireInput(3, 'k')))).toBe('answered queued');
    await b.release('h', 'k');
    const granted = await logA.next(/^granted a #3 /, 5000);
    const token = granted.split(' ')[3];
    await events.next(new RegExp(`^acquired k a ${token}$`), 5000);
    const status = await b.status('k', null);
    expect({
      holders: status.holders.map((x) => `${x.session} ${x.token}`),
      queue: status.queue,
      events: events.lines,
      lines: logA.lines,
    }).toEqual({
      holders: [`a ${token}`],
      queue: [],
      events: ['queued k a -', 'dequeued k a -', 'queued k a -', expect.stringMatching(/^released k h /), `acquired k a ${token}`],
      lines: [granted],
    });
  });

  it('grants a retry of an acquire whose failed call Redis granted anew, once that grant is released, leaving one hold', async () => {
    const { proxy, a, logA, b } = await nodes();
    const events = await watchAll(b);
    proxy.delayReplies(400);
    expect(await outcomeOf(a.acquire('a', acquireInput(1, 'k', { holdTimeout: 60_000 })))).toBe('failed store_unavailable');
    proxy.delayReplies(0);
    const retry = await a.acquire('a', acquireInput(2, 'k', { holdTimeout: 60_000 }));
    if (retry.status !== 'granted') throw new Error(`the retry was answered ${retry.status}`);
    await events.next(new RegExp(`^acquired k a ${retry.token}$`), 5000);
    const failedToken = events.lines[0]?.split(' ')[3];
    const status = await b.status('k', null);
    expect({
      holders: status.holders.map((x) => `${x.session} ${x.token}`),
      events: events.lines,
      lines: logA.lines,
    }).toEqual({
      holders: [`a ${retry.token}`],
      events: [`acquired k a ${failedToken}`, `released k a ${failedToken}`, `acquired k a ${retry.token}`],
      lines: [],
    });
    // The session holds exactly what it was answered: its release ends the key's only hold.
    await a.release('a', 'k');
    expect((await b.status('k', null)).locked).toBe(false);
  });

  it('answers a retry store_unavailable, never already queued, while Redis cannot yet take the failed acquire out', async () => {
    const { proxy, a, logA, b } = await nodes();
    expect(await b.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    const events = await watchAll(b);
    proxy.delayReplies(400);
    expect(await outcomeOf(a.acquire('a', acquireInput(2, 'k')))).toBe('failed store_unavailable');
    // Every reply is still late: the failed request cannot be looked at, so the retry must not run either.
    expect(await outcomeOf(a.acquire('a', acquireInput(3, 'k')))).toBe('failed store_unavailable');
    proxy.delayReplies(0);
    await events.next(/^dequeued k a /, 5000);
    expect(await outcomeOf(a.acquire('a', acquireInput(4, 'k')))).toBe('answered queued');
    await events.next(/^queued k a /, 5000);
    const status = await b.status('k', null);
    expect({ queue: status.queue.map((w) => w.session), events: events.lines, lines: logA.lines }).toEqual({
      queue: ['a'],
      events: ['queued k a -', 'dequeued k a -', 'queued k a -'],
      lines: [],
    });
  });

  it('leaves the holder on another node without the lock, told lost stolen, after a steal answered store_unavailable that Redis ran, and releases the steal\'s grant once Redis answers again', async () => {
    const { proxy, a, logA, b, logB } = await nodes();
    const held = await b.acquire('h', acquireInput(1, 'k'));
    if (held.status !== 'granted') throw new Error(`the holder was answered ${held.status}`);
    const events = await watchAll(b);
    proxy.delayReplies(400);
    expect(await outcomeOf(a.acquire('s', acquireInput(2, 'k', { steal: true })))).toBe('failed store_unavailable');
    proxy.delayReplies(0);
    // A steal cannot be undone: the victim was told, and stays without the lock.
    expect(await logB.next(/^lost h k /, 5000)).toBe(`lost h k ${held.token} stolen`);
    const released = await events.next(/^released k s /, 5000);
    const stolenToken = released.split(' ')[3];
    const status = await b.status('k', null);
    expect({ locked: status.locked, queue: status.queue, events: events.lines, linesA: logA.lines, linesB: logB.lines }).toEqual({
      locked: false,
      queue: [],
      events: [`stolen k h ${held.token}`, `acquired k s ${stolenToken}`, `released k s ${stolenToken}`],
      linesA: [],
      linesB: [`lost h k ${held.token} stolen`],
    });
  });

  it('takes a wait answered store_unavailable out of Redis once Redis answers again, so no record of it stays', async () => {
    const { proxy, namespace, a, logA, debugA, b } = await nodes();
    expect(await b.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    proxy.delayReplies(400);
    await expect(a.wait('a', { ticket: 2, key: 'k', timeout: null })).rejects.toMatchObject({ code: 'store_unavailable' });
    proxy.delayReplies(0);
    await debugA.next(/^took a failed wait out of Redis$/, 5000);
    const waits = keyNames(namespace).lockKeys(encodeKey('k'))[4];
    const redis = createClient({ url: stores.redis.url });
    await redis.connect();
    try {
      expect(await redis.hLen(waits)).toBe(0);
    } finally {
      redis.destroy();
    }
    await b.release('h', 'k');
    expect({ locked: (await a.status('k', null)).locked, lines: logA.lines }).toEqual({ locked: false, lines: [] });
  });

  it('tells nobody of the end of a wait answered store_unavailable when the holds it waited on end before Redis answers again', async () => {
    const { proxy, namespace, a, logA, b } = await nodes();
    expect(await b.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    const events = await watchAll(a);
    proxy.delayReplies(400);
    await expect(a.wait('a', { ticket: 2, key: 'k', timeout: null })).rejects.toMatchObject({ code: 'store_unavailable' });
    proxy.delayReplies(0);
    // Redis ends the stray wait with the hold and notes its end to a over pub/sub, in the batch of this event.
    await b.release('h', 'k');
    await events.next(/^released k h /, 5000);
    const waits = keyNames(namespace).lockKeys(encodeKey('k'))[4];
    const redis = createClient({ url: stores.redis.url });
    await redis.connect();
    try {
      expect({ waits: await redis.hLen(waits), lines: logA.lines }).toEqual({ waits: 0, lines: [] });
    } finally {
      redis.destroy();
    }
  });
});
