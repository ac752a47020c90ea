import { describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { useRedisStores } from './redis-harness.js';
import { acquireInput } from './server-harness.js';

describe('a Redis node whose pub/sub connection goes silent', () => {
  const stores = useRedisStores('ps');

  /** Node a reaches Redis through a proxy that can silence its pub/sub path; node b directly. */
  async function twoNodes(nodeTtl: number) {
    const clock = createManualClock();
    const { proxy, proxied: a, direct: b } = await stores.twoNodes({ nodeTtl, clock, tolerateCloseFailure: true });
    return { a, b, clock, proxy };
  }

  it('answers a queued acquire whose grant it never heard with that grant when its acquire timeout comes', async () => {
    const { a, b, clock, proxy } = await twoNodes(60_000);
    expect(await b.store.acquire('holder', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    proxy.silence();
    expect(await a.store.acquire('waiter', acquireInput(2, 'k', { acquireTimeout: 500 }))).toMatchObject({ status: 'queued' });
    await b.store.release('holder', 'k');
    const holders = (await b.store.status('k', null)).holders;
    expect(holders.map((h) => h.session)).toEqual(['waiter']);
    clock.advance(500);
    expect(await a.log.next(/^(granted|timedOut) waiter/, 3000)).toBe(`granted waiter #2 ${holders[0]?.token}`);
  });

  it('hands a waiter without an acquire timeout its grant within a few heartbeats when the grant was never heard', async () => {
    // Long enough that a node beside other busy test files keeps vouching for itself: the heartbeats
    // that hand the grant over come every third of it.
    const nodeTtl = 3000;
    const { a, b, proxy } = await twoNodes(nodeTtl);
    expect(await b.store.acquire('holder', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    proxy.silence();
    expect(await a.store.acquire('waiter', acquireInput(2, 'k'))).toMatchObject({ status: 'queued' });
    await b.store.release('holder', 'k');
    await a.log.next(/^granted waiter #2 /, 3 * nodeTtl);
  });
});
