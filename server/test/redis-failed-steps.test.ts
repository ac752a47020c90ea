import { describe, expect, it } from 'vitest';
import { createManualClock, type ManualClock } from '../src/clock.js';
import { silentLogger } from '../src/logger.js';
import { keyNames } from '../src/redis/key-codec.js';
import { LocalTable } from '../src/redis/local-table.js';
import { Reconciler } from '../src/redis/reconciler.js';
import type { StepRunner } from '../src/redis/step-runner.js';
import type { StoreContext } from '../src/redis/store-context.js';
import type { LockEvent, LockStore } from '../src/store.js';
import { listenerLog, useRedisStores, type ListenerLog, type PubSubProxy } from './redis-harness.js';
import { acquireInput } from './server-harness.js';

/** The events of a watch over every key, as `event key session`, that a test can await. */
async function watchAll(store: LockStore): Promise<ListenerLog> {
  const events = listenerLog();
  await store.watch('', 100, null, (e: LockEvent) => events.push(`${e.event} ${e.key} ${e.session}`));
  return events;
}

/** How a call ended: `answered <status>` or `failed <code>`. */
function outcomeOf(call: Promise<{ status: string }>): Promise<string> {
  return call.then(
    (o) => `answered ${o.status}`,
    (e: { code?: string }) => `failed ${e.code}`,
  );
}

describe('a Redis step whose call failed although Redis ran it', () => {
  const stores = useRedisStores('fail');

  /**
   * Node `a` behind a proxy with a command timeout of 300 ms, so a reply
   * delayed beyond it fails the call while Redis has run the step; node `b`
   * on Redis directly.
   */
  async function nodes(): Promise<{
    proxy: PubSubProxy;
    clock: ManualClock;
    a: LockStore;
    logA: ListenerLog;
    failedCalls: ListenerLog;
    b: LockStore;
  }> {
    const clock = createManualClock();
    const proxy = await stores.proxy();
    const namespace = stores.namespace();
    const logA = listenerLog();
    const failedCalls = listenerLog();
    const logger = {
      ...silentLogger,
      debug: (o: object, msg: string) => {
        if (msg === 'Redis call failed') failedCalls.push(`failed ${(o as { script?: string }).script}`);
      },
    };
    // Heartbeats every 10 s: no reconciliation of their own starts within a test.
    const a = await stores.startStore(
      { url: proxy.url, namespace, clock, logger, nodeTtl: 30_000, commandTimeout: 300, tolerateCloseFailure: true },
      logA.listener,
    );
    const b = await stores.startStore({ url: stores.redis.url, namespace, clock }, listenerLog().listener);
    return { proxy, clock, a, logA, failedCalls, b };
  }

  it('releases, once Redis answers again, the hold of an acquire answered store_unavailable, telling its session nothing', async () => {
    const { proxy, a, logA, b } = await nodes();
    const events = await watchAll(b);
    proxy.delayReplies(800);
    expect(await outcomeOf(a.acquire('a', acquireInput(1, 'k', { holdTimeout: 1000 })))).toBe('failed store_unavailable');
    proxy.delayReplies(0);
    await events.next(/^released k a$/, 5000);
    const other = await b.acquire('b', acquireInput(2, 'k', { acquireTimeout: 0 }));
    expect({ events: events.lines, other: other.status, lines: logA.lines }).toEqual({
      events: ['acquired k a', 'released k a', 'acquired k b'],
      other: 'granted',
      lines: [],
    });
  });

  it('takes a queued acquire answered store_unavailable out of the queue once Redis answers again', async () => {
    const { proxy, a, logA, b } = await nodes();
    expect(await b.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    const events = await watchAll(b);
    proxy.delayReplies(800);
    expect(await outcomeOf(a.acquire('a', acquireInput(2, 'k')))).toBe('failed store_unavailable');
    proxy.delayReplies(0);
    await events.next(/^dequeued k a$/, 5000);
    await b.release('h', 'k');
    await events.next(/^released k h$/, 5000);
    expect({ holders: (await b.status('k', null)).holders, events: events.lines, lines: logA.lines }).toEqual({
      holders: [],
      events: ['queued k a', 'dequeued k a', 'released k h'],
      lines: [],
    });
  });

  it('releases the grant a queued acquire answered store_unavailable got before Redis answered again, telling its session nothing', async () => {
    const { proxy, a, logA, b } = await nodes();
    expect(await b.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    const events = await watchAll(b);
    proxy.delayReplies(800);
    expect(await outcomeOf(a.acquire('a', acquireInput(2, 'k')))).toBe('failed store_unavailable');
    // Redis grants the failed request while a's replies are still late.
    await b.release('h', 'k');
    await events.next(/^acquired k a$/, 5000);
    proxy.delayReplies(0);
    await events.next(/^released k a$/, 5000);
    expect({ holders: (await b.status('k', null)).holders, events: events.lines, lines: logA.lines }).toEqual({
      holders: [],
      events: ['queued k a', 'released k h', 'acquired k a', 'released k a'],
      lines: [],
    });
  });
  it('tells a holder lost expired when the expiry of its hold ran in Redis but its reply came too late', async () => {
    const { proxy, clock, a, logA, failedCalls, b } = await nodes();
    const held = await a.acquire('h', acquireInput(1, 'k', { holdTimeout: 1000 }));
    if (held.status !== 'granted') throw new Error('h was not granted');
    proxy.delayReplies(800);
    clock.advance(1000);
    await failedCalls.next(/^failed expire$/, 3000);
    proxy.delayReplies(0);
    await logA.next(/^lost h k /, 3000);
    expect({ locked: (await b.status('k', null)).locked, lines: logA.lines }).toEqual({
      locked: false,
      lines: [`lost h k ${held.token} expired`],
    });
  });

  it('tells a holder lost stolen when a steal on its own node ran in Redis but its reply came too late', async () => {
    const { proxy, a, logA, b } = await nodes();
    const events = await watchAll(b);
    const held = await a.acquire('h', acquireInput(1, 'k'));
    if (held.status !== 'granted') throw new Error('h was not granted');
    proxy.delayReplies(800);
    expect(await outcomeOf(a.acquire('t', acquireInput(2, 'k', { steal: true })))).toBe('failed store_unavailable');
    proxy.delayReplies(0);
    await logA.next(/^lost h k /, 3000);
    // The failed steal itself changes nothing more: its grant is released again.
    await events.next(/^released k t$/, 5000);
    expect({ events: events.lines, lines: logA.lines }).toEqual({
      events: ['acquired k h', 'stolen k h', 'acquired k t', 'released k t'],
      lines: [`lost h k ${held.token} stolen`],
    });
  });

  it('tells a holder lost revoked when a revoke on its own node ran in Redis but its reply came too late', async () => {
    const { proxy, a, logA, b } = await nodes();
    const held = await a.acquire('h', acquireInput(1, 'k'));
    if (held.status !== 'granted') throw new Error('h was not granted');
    proxy.delayReplies(800);
    await expect(a.revoke('k')).rejects.toMatchObject({ code: 'store_unavailable' });
    proxy.delayReplies(0);
    await logA.next(/^lost h k /, 3000);
    expect({ locked: (await b.status('k', null)).locked, lines: logA.lines }).toEqual({
      locked: false,
      lines: [`lost h k ${held.token} revoked`],
    });
  });

  it('grants a waiter on the same node as a release that ran in Redis but was answered store_unavailable', async () => {
    const { proxy, a, logA, b } = await nodes();
    const held = await a.acquire('h', acquireInput(1, 'k'));
    if (held.status !== 'granted') throw new Error('h was not granted');
    expect(await a.acquire('w', acquireInput(2, 'k'))).toMatchObject({ status: 'queued' });
    proxy.delayReplies(800);
    // The release grants w in Redis; the note of that grant travelled only in the reply, which came too late.
    await expect(a.release('h', 'k')).rejects.toMatchObject({ code: 'store_unavailable' });
    proxy.delayReplies(0);
    const granted = await logA.next(/^granted w #2 /, 3000);
    await logA.next(/^lost h k /, 3000);
    const token = granted.split(' ')[3];
    // h was told its release failed, yet Redis ended its hold: it hears that it no longer holds k.
    expect({ holders: (await b.status('k', null)).holders.map((x) => `${x.session} ${x.token}`), lines: [...logA.lines].sort() }).toEqual({
      holders: [`w ${token}`],
      lines: [`granted w #2 ${token}`, `lost h k ${held.token} revoked`],
    });
  });
});

describe('the reconciliation of an acquire answered store_unavailable', () => {
  it('keeps the hold the failed acquire was granted once the session holds it here under the same token', async () => {
    // Redis says ticket 3 was granted token 7; a later acquire of the key was answered with that hold.
    const ctx = {
      link: { evalScript: async () => JSON.stringify({ st: 'granted', t: '7', x: '' }) },
      liveness: { id: 'n1', serving: true },
      names: keyNames('lw'),
      namespace: 'lw',
      logger: silentLogger,
      listener: null,
      closing: null,
    } as unknown as StoreContext;
    const table = new LocalTable(createManualClock(0), () => {});
    const local = table.session('s1');
    table.addHold(local, 's1', { key: 'doc:1', token: 7, expiresAt: null }, null);
    const ran: string[] = [];
    const steps = {
      busy: () => false,
      step: async (name: string) => {
        ran.push(name);
      },
    } as unknown as StepRunner;
    const reconciler = new Reconciler(ctx, table, steps);
    reconciler.uncertain(local, 3, 'doc:1');
    reconciler.reconcileSoon();
    await reconciler.settled();
    expect({ ran, uncertain: [...local.uncertain], holds: [...local.holds.keys()] }).toEqual({
      ran: [],
      uncertain: [],
      holds: ['doc:1'],
    });
  });
});
